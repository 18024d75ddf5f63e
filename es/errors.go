package es

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

var (
	// ErrWrongExpectedVersion means an append's expected version did not
	// match the stream. The details are in a [*VersionConflictError].
	ErrWrongExpectedVersion = errors.New("es: wrong expected version")
	// ErrStreamNotFound means a stream has no events.
	ErrStreamNotFound = errors.New("es: stream not found")
	// ErrStreamDeleted means a stream was deleted and cannot be read or written.
	ErrStreamDeleted = errors.New("es: stream deleted")
	// ErrInvalidEvent means an append was refused because its input was
	// invalid; nothing was written. The details are in an [*InvalidEventError].
	ErrInvalidEvent = errors.New("es: invalid event")
	// ErrDuplicateEventID means an event ID is already stored somewhere other
	// than where the append would put it.
	ErrDuplicateEventID = errors.New("es: duplicate event id")
	// ErrUnknownEventType means a record's type is not registered.
	ErrUnknownEventType = errors.New("es: unknown event type")
	// ErrDecode means a record's data could not be decoded into its
	// registered type.
	ErrDecode = errors.New("es: cannot decode event")
	// ErrSnapshotNotFound means no snapshot is stored for a stream.
	ErrSnapshotNotFound = errors.New("es: snapshot not found")
	// ErrUnknownOutcome means the connection to the store broke after an
	// append was sent, so it may or may not have been stored. Retrying it with
	// the same event IDs and the same expected version is safe: if the first
	// attempt was stored, the retry returns its result (see [Store.Append]).
	// The details are in an [*UnknownOutcomeError].
	ErrUnknownOutcome = errors.New("es: append outcome unknown")
)

// VersionConflictError is returned when a stream's version does not satisfy
// an append's expected version.
type VersionConflictError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   int64 // the stream's version when the append was checked; 0: no events
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("es: append to %s: wrong expected version: expected %s, stream is at version %d", e.Stream, e.Expected, e.Actual)
}

func (e *VersionConflictError) Unwrap() error { return ErrWrongExpectedVersion }

// UnknownOutcomeError is returned by an append whose connection broke after
// the append was sent: it may have been stored, or not. Err says what broke,
// in the store's words; errors.As still reaches the driver's own error.
type UnknownOutcomeError struct {
	Stream string
	Err    error
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("es: append to %s: outcome unknown, it may or may not be stored: %v", e.Stream, e.Err)
}

// Unwrap returns [ErrUnknownOutcome] and Err.
func (e *UnknownOutcomeError) Unwrap() []error { return []error{ErrUnknownOutcome, e.Err} }

// InvalidEventError describes an append refused for bad input.
type InvalidEventError struct {
	Stream string
	Index  int    // index of the offending event in the append; -1 when the append as a whole is wrong
	Type   string // the offending event's type, if known
	Reason string
	// Size and Limit are set when the event (Index >= 0) or the append as a
	// whole (Index -1) is too large: its size in bytes, as [EventSize]
	// measures it, and the limit it exceeds (see [SizeLimits]).
	Size, Limit int
}

func (e *InvalidEventError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("es: append to %q: %s", e.Stream, e.Reason)
	}
	return fmt.Sprintf("es: append to %q: event %d (type %q): %s", e.Stream, e.Index, e.Type, e.Reason)
}

func (e *InvalidEventError) Unwrap() error { return ErrInvalidEvent }

// DuplicateEventIDError is returned when an append carries an event ID that
// the store already holds in another place.
type DuplicateEventIDError struct {
	Stream string // the stream the append was for
	ID     uuid.UUID
}

func (e *DuplicateEventIDError) Error() string {
	return fmt.Sprintf("es: append to %s: event id %s is already stored elsewhere", e.Stream, e.ID)
}

func (e *DuplicateEventIDError) Unwrap() error { return ErrDuplicateEventID }

// StreamNotFoundError is returned when reading a stream that has no events.
type StreamNotFoundError struct{ Stream string }

func (e *StreamNotFoundError) Error() string {
	return fmt.Sprintf("es: read %s: stream not found", e.Stream)
}

func (e *StreamNotFoundError) Unwrap() error { return ErrStreamNotFound }

// UnknownEventTypeError is returned when decoding a record whose type is not
// registered.
type UnknownEventTypeError struct {
	Stream  string
	Version int64
	Type    string
}

func (e *UnknownEventTypeError) Error() string {
	return fmt.Sprintf("es: decode %s@%d: unknown event type %q", e.Stream, e.Version, e.Type)
}

func (e *UnknownEventTypeError) Unwrap() error { return ErrUnknownEventType }

// DecodeError is returned when a record's data does not fit its registered
// type, or an upcaster failed on it.
type DecodeError struct {
	Stream  string
	Version int64
	Type    string
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("es: decode %s@%d (type %q): %v", e.Stream, e.Version, e.Type, e.Err)
}

// Unwrap returns both [ErrDecode] and the underlying cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }
