package es

import (
	"bytes"
	"encoding/json"
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
// stores cannot keep, NUL bytes in names and metadata and the JSON escape
// \u0000 in data, so that every store accepts the same events. Stores call
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
		case len(e.Data) == 0:
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event data is empty; want a JSON value"}
		case !json.Valid(e.Data):
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event data is not valid JSON"}
		case hasEscapedNUL(e.Data):
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: `event data contains the escape \u0000, which stores cannot keep`}
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

// hasEscapedNUL reports whether valid JSON data holds the escape \u0000 in
// a string (PostgreSQL's jsonb, among others, refuses it). An escape counts
// only when an even number of backslashes precedes it, so "\\u0000" (an
// escaped backslash followed by the text u0000) is fine.
func hasEscapedNUL(data []byte) bool {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		at := i + j
		n := 0
		for k := at - 1; k >= 0 && data[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = at + 1
	}
}
