package kafkasink

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/stratadev/strata/es"
)

var (
	// ErrFenced means another producer with the projection's transactional
	// ID started after this one: another worker publishes the projection,
	// and this one must stop. It is not transient, and the sink does not
	// mark the projection stalled for it (the other worker is the
	// legitimate one). The details are in a [*FencedError].
	ErrFenced = errors.New("kafkasink: fenced by another producer")
	// ErrTopic means a topic the sink needs is missing or not accessible.
	// The details are in a [*TopicError].
	ErrTopic = errors.New("kafkasink: topic not usable")
	// ErrTimeout means Kafka did not finish a batch or a start within
	// [Config.Timeout]. It is transient.
	ErrTimeout = errors.New("kafkasink: no answer from Kafka in time")
	// ErrLeaseHeld means [Sink.Republish] found a worker holding the
	// projection's lease.
	ErrLeaseHeld = errors.New("kafkasink: projection's lease is held")
	// ErrCheckpointLost means the checkpoint topic has no checkpoint for a
	// projection whose keeper says it published events. The details are
	// in a [*CheckpointLostError].
	ErrCheckpointLost = errors.New("kafkasink: checkpoint lost")
)

// FencedError says that a projection's producer was fenced: another
// producer with the same transactional ID (another worker of the
// projection) started after it.
type FencedError struct {
	Projection      string
	TransactionalID string
	Err             error // Kafka's error
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("kafkasink: another worker publishes projection %s (transactional ID %s); this one stopped: %v",
		e.Projection, e.TransactionalID, e.Err)
}

// Unwrap returns ErrFenced and Kafka's error.
func (e *FencedError) Unwrap() []error { return []error{ErrFenced, e.Err} }

// TopicError says that a topic is missing, not authorized, or could not be
// created.
type TopicError struct {
	Topic  string
	Reason string // e.g. "does not exist and Config.CreateTopics is false"
	Err    error  // Kafka's error, if any
}

func (e *TopicError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("kafkasink: topic %s: %s: %v", e.Topic, e.Reason, e.Err)
	}
	return fmt.Sprintf("kafkasink: topic %s: %s", e.Topic, e.Reason)
}

// Unwrap returns ErrTopic and Kafka's error.
func (e *TopicError) Unwrap() []error { return []error{ErrTopic, e.Err} }

// TimeoutError is work Kafka did not finish in time.
type TimeoutError struct {
	Op    string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("kafkasink: %s: not done within %v", e.Op, e.After)
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// CheckpointLostError says that the checkpoint topic has no checkpoint for
// a projection, while its keeper has one past the start of the log: the
// topic was deleted, or the sink now talks to another cluster. The sink
// does not publish everything again by itself; [Sink.Republish] does,
// from a position of the operator's choice.
type CheckpointLostError struct {
	Projection, Topic string
	Keeper            es.Position
}

func (e *CheckpointLostError) Error() string {
	return fmt.Sprintf("kafkasink: %s: the topic %s has no checkpoint for it, but its keeper's checkpoint is at %s (the topic was deleted, or this is another cluster); publish again with Sink.Republish from the position the consumers need",
		e.Projection, e.Topic, e.Keeper)
}

func (e *CheckpointLostError) Unwrap() error { return ErrCheckpointLost }

// transientError marks a Kafka error worth retrying, for
// [projections.IsTransient].
type transientError struct{ err error }

func (e *transientError) Error() string   { return e.err.Error() }
func (e *transientError) Unwrap() error   { return e.err }
func (e *transientError) Transient() bool { return true }

// fencedCause reports whether err says the producer was fenced.
func fencedCause(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// IsTransient reports whether an error of the sink is worth retrying:
// Kafka unreachable or slow ([ErrTimeout]), a topic missing or not
// accessible ([ErrTopic]: an operator may create it or grant the ACL, and
// a topic created a moment ago may not be in the brokers' metadata yet),
// and other failures of a batch that a new producer may not meet. A fenced
// producer ([ErrFenced]) and a lost checkpoint are not.
// [Sink.Transient] adds the errors of its [Keeper].
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, ErrFenced) || errors.Is(err, ErrCheckpointLost) {
		return false
	}
	var t *transientError
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrTopic) || errors.As(err, &t)
}
