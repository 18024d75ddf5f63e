package es

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxStreamLength is the longest stream ID, in bytes, that stores accept.
const MaxStreamLength = 1024

// ValidateAppend checks an append's input the same way for every store: a
// non-empty stream ID, at least one event, a type and valid JSON data on each
// event, valid UTF-8 in names and no event ID twice. It returns an
// [*InvalidEventError] naming the first problem. Stores call it before they
// write anything.
func ValidateAppend(stream string, events []EventData) error {
	switch {
	case stream == "":
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "stream id is empty"}
	case len(stream) > MaxStreamLength:
		return &InvalidEventError{Stream: stream[:64] + "…", Index: -1, Reason: "stream id is longer than 1024 bytes"}
	case !utf8.ValidString(stream):
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "stream id is not valid UTF-8"}
	case len(events) == 0:
		return &InvalidEventError{Stream: stream, Index: -1, Reason: "no events to append"}
	}
	var seen map[uuid.UUID]struct{}
	for i, e := range events {
		switch {
		case e.Type == "":
			return &InvalidEventError{Stream: stream, Index: i, Reason: "event type is empty"}
		case !utf8.ValidString(e.Type):
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event type is not valid UTF-8"}
		case len(e.Data) == 0:
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event data is empty; want a JSON value"}
		case !json.Valid(e.Data):
			return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event data is not valid JSON"}
		}
		for k, v := range e.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return &InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "metadata is not valid UTF-8"}
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
