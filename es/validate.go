package es

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxStreamLength is the longest stream ID, in bytes, that stores accept.
const MaxStreamLength = 1024

// ValidateAppend checks an append's input the same way for every store: a
// non-empty stream ID, at least one event, a type and valid JSON data on each
// event, valid UTF-8 in names and no event ID twice. It returns an
// [*InvalidEventError] naming the first problem. It also refuses what some
// stores cannot keep, NUL bytes in names and metadata and the escapes that
// [CheckData] refuses in data, so that every store accepts the same events. Stores call
// it before they write anything.
func ValidateAppend(stream string, events []EventData) error {
	switch {
	case stream == "":
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "stream id is empty"}
	case len(stream) > MaxStreamLength:
		return &InvalidEventError{Stream: shorten(stream), Index: -1, Reason: fmt.Sprintf("stream id is %d bytes long; the limit is %d", len(stream), MaxStreamLength)}
	case !utf8.ValidString(stream):
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "stream id is not valid UTF-8"}
	case strings.IndexByte(stream, 0) >= 0:
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "stream id contains a NUL byte"}
	case len(events) == 0:
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "no events to append"}
	}
	var seen map[uuid.UUID]struct{}
	for i, e := range events {
		switch {
		case e.Type == "":
			return &InvalidEventError{Stream: stream, Index: i, Reason: "event type is empty"}
		case !utf8.ValidString(e.Type) || strings.IndexByte(e.Type, 0) >= 0:
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event type is not valid UTF-8 without NUL bytes"}
		}
		if reason := dataProblem(e.Data); reason != "" {
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event data " + reason}
		}
		for k, v := range e.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
				return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: fmt.Sprintf("metadata key %q: not valid UTF-8 without NUL bytes", k)}
			}
		}
		if e.ID == uuid.Nil {
			continue
		}
		if seen == nil {
			seen = make(map[uuid.UUID]struct{}, len(events))
		}
		if _, dup := seen[e.ID]; dup {
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event id " + e.ID.String() + " appears twice in one append"}
		}
		seen[e.ID] = struct{}{}
	}
	return nil
}

// shorten cuts a long stream ID for an error message without splitting a
// UTF-8 sequence.
func shorten(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// CheckData reports why data cannot be stored as an event's or a
// snapshot's JSON, or nil: it is empty, it is not valid JSON, or it holds a
// string escape that not every store can keep (\u0000, or an unpaired UTF-16
// surrogate such as \ud800, which PostgreSQL's jsonb refuses, so that
// data stored as json stays castable to jsonb).
func CheckData(data []byte) error {
	if reason := dataProblem(data); reason != "" {
		return errors.New("data " + reason)
	}
	return nil
}

func dataProblem(data []byte) string {
	switch {
	case len(data) == 0:
		return "is empty; want a JSON value"
	case !json.Valid(data):
		return "is not valid JSON"
	}
	return unstorableEscape(data)
}

// unstorableEscape returns why valid JSON b holds a string escape that
// stores cannot keep, or "".
func unstorableEscape(b []byte) string {
	if !bytes.Contains(b, []byte(`\u`)) {
		return ""
	}
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			i++
			if i >= len(b) || b[i] != 'u' || i+4 >= len(b) {
				continue
			}
			r := hex4(b[i+1 : i+5])
			i += 4
			switch {
			case r == 0:
				return `contains the escape \u0000, which stores cannot keep`
			case r >= 0xDC00 && r <= 0xDFFF:
				return "contains an unpaired UTF-16 surrogate escape, which stores cannot keep"
			case r >= 0xD800 && r <= 0xDBFF:
				// A high surrogate must be followed by \u and a low one.
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if lo := hex4(b[i+3 : i+7]); lo >= 0xDC00 && lo <= 0xDFFF {
						i += 6
						continue
					}
				}
				return "contains an unpaired UTF-16 surrogate escape, which stores cannot keep"
			}
		}
	}
	return ""
}

// hex4 decodes four hex digits that json.Valid has checked already.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// SizeLimits bound what one append may carry. Each store takes them from
// its Config, with defaults that fit its backend, and checks them with
// [SizeLimits.Check] before it sends anything. Sizes are measured by
// [EventSize].
type SizeLimits struct {
	// MaxEventSize is the largest event, in bytes. 0 means no limit.
	MaxEventSize int
	// MaxAppendSize is the largest append, in bytes: the sum of the sizes
	// of its events. 0 means no limit.
	MaxAppendSize int
}

// EventSize is the size of an event as [SizeLimits] measure it: the bytes
// of its type and its data, and of its metadata written as a JSON object
// ({"key":"value",…}, not counting escapes). It is close to what the event
// takes on the wire and in a store, and it is the same for every store.
func EventSize(e EventData) int {
	n := len(e.Type) + len(e.Data)
	if len(e.Metadata) > 0 {
		n++ // {} and the commas
		for k, v := range e.Metadata {
			n += len(k) + len(v) + 6 // "k":"v",
		}
	}
	return n
}

// Check returns an [*InvalidEventError] when an event is larger than
// MaxEventSize, naming the stream, the first such event and its size
// against the limit, or when the events together are larger than
// MaxAppendSize; nil otherwise.
func (l SizeLimits) Check(stream string, events []EventData) error {
	if l.MaxEventSize <= 0 && l.MaxAppendSize <= 0 {
		return nil
	}
	total := 0
	for i, e := range events {
		n := EventSize(e)
		if l.MaxEventSize > 0 && n > l.MaxEventSize {
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Size: n, Limit: l.MaxEventSize,
				Reason: fmt.Sprintf("event is %d bytes; the limit is %d (MaxEventSize)", n, l.MaxEventSize)}
		}
		total += n
	}
	if l.MaxAppendSize > 0 && total > l.MaxAppendSize {
		return &InvalidEventError{Stream: stream, Index: -1, Size: total, Limit: l.MaxAppendSize,
			Reason: fmt.Sprintf("the %d events are %d bytes together; the limit is %d (MaxAppendSize)", len(events), total, l.MaxAppendSize)}
	}
	return nil
}

// Validate reports a negative limit; prefix names the Config, such as
// "pgstore: Config".
func (l SizeLimits) Validate(prefix string) error {
	var errs []error
	if l.MaxEventSize < 0 {
		errs = append(errs, fmt.Errorf("%s.MaxEventSize is %d; want 0 (default) or more", prefix, l.MaxEventSize))
	}
	if l.MaxAppendSize < 0 {
		errs = append(errs, fmt.Errorf("%s.MaxAppendSize is %d; want 0 (default) or more", prefix, l.MaxAppendSize))
	}
	return errors.Join(errs...)
}
