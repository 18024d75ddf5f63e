package process

import (
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs"
)

var (
	// ErrState means the stored state of an instance does not decode into
	// the manager's state type, typically after a change of that type. The
	// instance is marked failed; its stored state is kept as it was. The
	// details are in a [*StateError].
	ErrState = errors.New("process: state does not decode")
	// ErrUnregisteredCommand means a decision holds a command whose type is
	// not registered in the runtime's [Commands]. The details are in an
	// [*UnregisteredCommandError].
	ErrUnregisteredCommand = errors.New("process: unregistered command")
)

// StateError is returned when the stored state of an instance does not
// decode.
type StateError struct {
	Process string
	Err     error // json's error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("process: %s: decode state: %v", e.Process, e.Err)
}

// Unwrap returns [ErrState] and json's error.
func (e *StateError) Unwrap() []error { return []error{ErrState, e.Err} }

// UnregisteredCommandError is returned for a decided command whose type is
// not registered.
type UnregisteredCommandError struct {
	Command string // see cqrs.CommandName
}

func (e *UnregisteredCommandError) Error() string {
	return fmt.Sprintf("process: store command %s: its type is not registered", e.Command)
}

// Unwrap returns [ErrUnregisteredCommand].
func (e *UnregisteredCommandError) Unwrap() error { return ErrUnregisteredCommand }

// Permanent reports whether a dispatch error is final, so that the command
// is not retried and its instance gets a [CommandRejected]: the domain
// rejected it, it was invalid, its aggregate was missing or already there,
// its ID was used by another command, or no handler handles it. Other
// errors (a version conflict, a lost connection, a handler's panic) are
// retried.
func Permanent(err error) bool {
	for _, target := range []error{cqrs.ErrRejected, cqrs.ErrInvalidCommand, cqrs.ErrAggregateNotFound,
		cqrs.ErrAggregateExists, cqrs.ErrCommandIDReused, cqrs.ErrUnknownCommand, cqrs.ErrNilCommand} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
