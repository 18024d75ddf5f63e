package cqrs

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrUnknownCommand means no handler is registered for a command's type.
	// The details are in an [*UnknownCommandError].
	ErrUnknownCommand = errors.New("cqrs: unknown command")
	// ErrNilCommand means a nil command, or a nil pointer to one, was
	// dispatched.
	ErrNilCommand = errors.New("cqrs: nil command")
	// ErrInvalidCommand means a command failed validation; nothing was loaded
	// or written. The details are in a [*ValidationError].
	ErrInvalidCommand = errors.New("cqrs: invalid command")
	// ErrHandlerPanic means a handler, a middleware or a Validate method
	// panicked. The details are in a [*PanicError].
	ErrHandlerPanic = errors.New("cqrs: handler panicked")
	// ErrAggregateNotFound means a command handled with [OnExisting] named an
	// aggregate that has no events. The details are in an
	// [*AggregateNotFoundError].
	ErrAggregateNotFound = errors.New("cqrs: aggregate not found")
	// ErrAggregateExists means a command handled with [OnNew] named an
	// aggregate that already has events. The details are in an
	// [*AggregateExistsError].
	ErrAggregateExists = errors.New("cqrs: aggregate already exists")
	// ErrCommandIDReused means a command carried the ID of an earlier
	// command of its type that was not the same command: it had another
	// payload or named another aggregate. Nothing was written. The details
	// are in a [*CommandIDReusedError].
	ErrCommandIDReused = errors.New("cqrs: command id reused")
	// ErrRejected means the domain refused a command: its decide function
	// returned an error. The details are in a [*RejectedError].
	ErrRejected = errors.New("cqrs: command rejected")
)

// RejectedError is returned when a decide function refuses a command. Err
// is the decider's own error, so that an HTTP layer can tell a refusal
// from a failure and show the domain's words without the bus's prefix:
//
//	var re *cqrs.RejectedError
//	if errors.As(err, &re) { msg = re.Err.Error() }
type RejectedError struct {
	Command string // the command's type name, see [CommandName]
	Stream  string // the aggregate's stream
	Err     error  // the decider's error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("cqrs: handle %s for %s: %v", e.Command, e.Stream, e.Err)
}

// Unwrap returns [ErrRejected] and the decider's error.
func (e *RejectedError) Unwrap() []error { return []error{ErrRejected, e.Err} }

// UnknownCommandError is returned by [Bus.Dispatch] for a command whose type
// has no handler.
type UnknownCommandError struct {
	Command    string   // the command's type name, see [CommandName]
	Registered []string // the command types the bus handles, sorted
}

func (e *UnknownCommandError) Error() string {
	if len(e.Registered) == 0 {
		return fmt.Sprintf("cqrs: dispatch %s: unknown command; no command types are registered", e.Command)
	}
	return fmt.Sprintf("cqrs: dispatch %s: unknown command; registered: %s", e.Command, strings.Join(e.Registered, ", "))
}

func (e *UnknownCommandError) Unwrap() error { return ErrUnknownCommand }

// ValidationError is returned by [Bus.Dispatch] when a command's Validate
// method (see [Validator]) returns an error. Nothing was loaded or written.
type ValidationError struct {
	Command string
	// Fields lists every [FieldError] found in Err, in order.
	Fields []FieldError
	// Err is what Validate returned.
	Err error
}

func (e *ValidationError) Error() string {
	msg := "validation failed"
	if e.Err != nil {
		// errors.Join puts one problem on each line; keep the message on one.
		msg = strings.ReplaceAll(e.Err.Error(), "\n", "; ")
	}
	return "cqrs: invalid command " + e.Command + ": " + msg
}

// Unwrap returns both [ErrInvalidCommand] and the error Validate returned,
// so errors.Is and errors.As reach the caller's own validation errors.
func (e *ValidationError) Unwrap() []error { return []error{ErrInvalidCommand, e.Err} }

// PanicError is returned when a handler, a middleware or a Validate method
// panics. The panic is recovered; a panic before the append (in Validate, in
// a middleware, in an ID function or in a decide function) leaves nothing
// written.
type PanicError struct {
	Command string
	Value   any    // the value passed to panic
	Stack   []byte // the stack of the panicking goroutine
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("cqrs: handle %s: panic: %v", e.Command, e.Value)
}

// Unwrap returns [ErrHandlerPanic] and, when the panic value is an error,
// that error too.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrHandlerPanic, err}
	}
	return []error{ErrHandlerPanic}
}

// AggregateNotFoundError is returned when a command handled with
// [OnExisting] names an aggregate whose stream has no events.
type AggregateNotFoundError struct {
	Command string
	Stream  string
}

func (e *AggregateNotFoundError) Error() string {
	return fmt.Sprintf("cqrs: handle %s: aggregate %s not found", e.Command, e.Stream)
}

func (e *AggregateNotFoundError) Unwrap() error { return ErrAggregateNotFound }

// AggregateExistsError is returned when a command handled with [OnNew] names
// an aggregate whose stream already has events. Commands that create an
// aggregate are not retried.
type AggregateExistsError struct {
	Command string
	Stream  string
	Err     error // the store's error, a [*es.VersionConflictError]
}

func (e *AggregateExistsError) Error() string {
	return fmt.Sprintf("cqrs: handle %s: aggregate %s already exists", e.Command, e.Stream)
}

// Unwrap returns [ErrAggregateExists] and the store's conflict, which
// unwraps to [es.ErrWrongExpectedVersion].
func (e *AggregateExistsError) Unwrap() []error { return []error{ErrAggregateExists, e.Err} }

// ConflictError is returned when a command handled with [OnExisting] or
// [OnAny] still met a concurrent write after [AggregateConfig.MaxAttempts]
// attempts. Nothing of this command was written. It unwraps to the last
// [*es.VersionConflictError], and so to [es.ErrWrongExpectedVersion].
type ConflictError struct {
	Command  string
	Stream   string
	Attempts int
	Err      error // the last conflict the store returned
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("cqrs: handle %s for %s: conflicting writes after %d attempts: %v", e.Command, e.Stream, e.Attempts, e.Err)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// What a [CommandIDReusedError] found different from the first command with
// the ID.
const (
	ReusedPayload   = "payload"   // the same aggregate, another payload
	ReusedAggregate = "aggregate" // another aggregate
)

// CommandIDReusedError is returned when a command carries the ID (see
// [Identified]) of an earlier command of the same type that appended events
// but was not the same command: its payload (the command's JSON encoding)
// differed, or it named another aggregate. Nothing was written, and the
// earlier command's result is not returned. See the package documentation
// for what makes two commands the same.
type CommandIDReusedError struct {
	Command   string // the command's type name, see [CommandName]
	CommandID string
	Stream    string // the stream this command named
	// Differs says what differs from the earlier command: [ReusedPayload]
	// or [ReusedAggregate].
	Differs string
	// Err is the store's error when it refused the append because it holds
	// the command's event IDs (a [*es.DuplicateEventIDError]); nil
	// otherwise.
	Err error
}

func (e *CommandIDReusedError) Error() string {
	what := "with another payload"
	if e.Differs == ReusedAggregate {
		what = "on another aggregate"
	}
	return fmt.Sprintf("cqrs: handle %s for %s: command id %q was already used by a command %s", e.Command, e.Stream, e.CommandID, what)
}

// Unwrap returns [ErrCommandIDReused] and, when set, the store's error.
func (e *CommandIDReusedError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCommandIDReused}
	}
	return []error{ErrCommandIDReused, e.Err}
}
