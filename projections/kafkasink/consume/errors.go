package consume

import (
	"errors"
	"fmt"
)

var (
	// ErrBadMessage means a message cannot be consumed, however often it
	// is tried: its headers are not an integration event's, its value is
	// too large, or the handler or the mapping refused it. It follows the
	// error policy. The details are in a [*MessageError].
	ErrBadMessage = errors.New("consume: bad message")
	// ErrStalled means a consumer stopped at a message under
	// [projections.PolicyStop]; it consumes nothing after it until it is
	// started again. The details are in a [*StalledError].
	//
	// [projections.PolicyStop]: https://pkg.go.dev/github.com/stratadev/strata/projections#PolicyStop
	ErrStalled = errors.New("consume: consumer stalled")
	// ErrNotIdentified means a mapping returned a command without an ID,
	// which the bus could not recognize when the message is delivered
	// again. The consumer stops at the message whatever the error policy,
	// since every message would meet the same fate. The details are in a
	// [*NotIdentifiedError].
	ErrNotIdentified = errors.New("consume: command has no id")
)

// MessageError says which message could not be consumed and why.
type MessageError struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error // the reason
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("consume: message at %s: %v", e.At(), e.Err)
}

// At names the message: "topic <t> partition <p> offset <o>".
func (e *MessageError) At() string {
	return fmt.Sprintf("topic %s partition %d offset %d", e.Topic, e.Partition, e.Offset)
}

// Unwrap returns [ErrBadMessage] and the reason.
func (e *MessageError) Unwrap() []error { return []error{ErrBadMessage, e.Err} }

// BadMessage returns the error a [Handler] returns for a message it cannot
// handle, however often it is tried (its value does not decode, its type
// is unknown): the message then follows the error policy. Any other error
// from a handler is taken as transient, and the batch is tried again.
func BadMessage(msg Message, reason error) error {
	return &MessageError{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Err: reason}
}

// StalledError is returned by Run when a consumer stopped at a message.
// The same reason is in [Status].
type StalledError struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Err       error // why: a [*MessageError]'s reason, or a [*NotIdentifiedError]
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("consume: group %s stopped at topic %s partition %d offset %d: %v",
		e.Group, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns [ErrStalled] and the reason.
func (e *StalledError) Unwrap() []error { return []error{ErrStalled, e.Err} }

// NotIdentifiedError is the reason a [Commands] consumer stops when its
// mapping returns a command that does not implement [cqrs.Identified] or
// whose ID is empty.
//
// [cqrs.Identified]: https://pkg.go.dev/github.com/stratadev/strata/cqrs#Identified
type NotIdentifiedError struct {
	Command string // the command's type name, see cqrs.CommandName
}

func (e *NotIdentifiedError) Error() string {
	return fmt.Sprintf("consume: command %s has no id: implement cqrs.Identified and return msg.CommandID() from CommandID, "+
		"so that a redelivered message is not applied twice", e.Command)
}

func (e *NotIdentifiedError) Unwrap() error { return ErrNotIdentified }
