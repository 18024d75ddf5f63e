package projections

import (
	"context"
	"time"

	"github.com/stratadev/strata/es"
)

// State is what a projection is doing, as recorded with its checkpoint.
type State string

const (
	StateRunning    State = "running"    // applying events, or ready to
	StateStalled    State = "stalled"    // stopped at an event it could not handle
	StatePaused     State = "paused"     // held by an operator; workers wait
	StateRebuilding State = "rebuilding" // a new generation is being built
	// StateRetrying is never stored: [ReadStatus] reports it for a running
	// projection whose worker is retrying a transient error, recorded
	// through a [RetryRecorder].
	StateRetrying State = "retrying"
)

// Checkpoint is where a projection is in the log and what state it is in.
type Checkpoint struct {
	Name     string
	Position es.Position // the last event applied (or skipped); Start for none
	State    State
	// Failure is the last event the projection could not handle, if any:
	// the cause of a stall, or the last dead letter; or, with Retrying set,
	// the transient error its worker is retrying (see [RetryRecorder]).
	Failure   *Failure
	UpdatedAt time.Time
}

// DeadLetter is an event parked by [PolicyDeadLetter].
type DeadLetter struct {
	Projection string
	Record     es.Record
	Failure    Failure
}

// ApplyParams describe one batch for [Sink.Apply].
type ApplyParams struct {
	Projection string
	// From is the checkpoint the batch starts after; To is the position of
	// the last record it covers (handled or skipped).
	From, To es.Position
	// Events are the events to hand to the handler; empty when the batch
	// only skips or parks events.
	Events []Event
	// DeadLetters are parked in the same transaction.
	DeadLetters []DeadLetter
}

// Checkpoints reads and writes projection checkpoints.
type Checkpoints interface {
	// Checkpoint returns the checkpoint of a projection: position Start and
	// StateRunning when there is none yet.
	Checkpoint(ctx context.Context, projection string) (Checkpoint, error)
	// SetState records a state and, when f is not nil, the failure that
	// caused it. Setting StateRunning clears the failure: that is how an
	// operator resumes a stalled projection.
	SetState(ctx context.Context, projection string, state State, f *Failure) error
}

// Sink applies batches of events to a read model and keeps checkpoints. Tx is
// what the projection's handler receives.
type Sink[Tx any] interface {
	Checkpoints
	// Apply calls handle with the batch's events in one unit of work that
	// also moves the checkpoint from p.From to p.To and stores
	// p.DeadLetters: all of it takes effect or none. When the checkpoint is
	// not at p.From, Apply does not call handle and returns a
	// [*CheckpointMovedError]. When the projection is paused
	// ([StatePaused], checked under the same lock), Apply does not call
	// handle and returns an error that wraps [ErrPaused], so a pause takes
	// effect between batches. handle is not called when p.Events is empty.
	Apply(ctx context.Context, p ApplyParams, handle func(ctx context.Context, tx Tx) error) error
	// Transient reports whether err is worth retrying: a lost connection,
	// a serialization failure, a deadlock.
	Transient(err error) bool
}

// Locker is implemented by sinks that can make sure a single worker applies
// a projection at a time.
type Locker interface {
	// TryLock takes the lease of a projection if no one holds it, and
	// reports whether it did.
	TryLock(ctx context.Context, projection string) (Lease, bool, error)
}

// Lease is held by the one worker allowed to apply a projection.
type Lease interface {
	// Lost is closed when the lease is lost, for example because its
	// connection died.
	Lost() <-chan struct{}
	// Release gives the lease up. It is safe to call more than once.
	Release(ctx context.Context) error
}
