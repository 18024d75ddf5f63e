package projections

import (
	"errors"
	"fmt"
	"time"

	"github.com/stratadev/strata/es"
)

var (
	// ErrStalled means a projection stopped at an event it could not handle.
	// The details are in a [*StalledError].
	ErrStalled = errors.New("projections: projection stalled")
	// ErrCheckpointMoved means a batch was not applied because the
	// checkpoint was no longer where the worker started: another worker
	// applied it, or an earlier attempt committed after all. Workers recover
	// from it by reading the checkpoint again.
	ErrCheckpointMoved = errors.New("projections: checkpoint moved")
	// ErrPaused means a projection is paused: [Sink.Apply] returns an error
	// that wraps it instead of applying a batch, and the worker then waits
	// for the projection to be resumed (see [Pause]).
	ErrPaused = errors.New("projections: projection paused")
	// ErrBehind means a projection had not reached a position when the
	// wait for it ended (see [WaitFor]). The details are in a
	// [*BehindError].
	ErrBehind = errors.New("projections: projection behind")
)

// BehindError is returned by [WaitFor] and [WaitForAll] when their context
// ends before a projection has reached the position they wait for. It
// wraps both [ErrBehind] and the context's error, so errors.Is(err,
// context.DeadlineExceeded) tells an expired bound.
type BehindError struct {
	// Projection is the projection that had not reached Want.
	Projection string
	// Want is the position waited for; Checkpoint is the projection's
	// checkpoint as last read (zero when it could not be read).
	Want, Checkpoint es.Position
	// Err is the context's error.
	Err error
}

func (e *BehindError) Error() string {
	return fmt.Sprintf("projections: wait for %s to reach %s (at %s): %v", e.Projection, e.Want, e.Checkpoint, e.Err)
}

// Unwrap returns ErrBehind and the context's error.
func (e *BehindError) Unwrap() []error { return []error{ErrBehind, e.Err} }

// Failure describes an event a projection could not handle.
type Failure struct {
	Stream   string
	Version  int64
	Position es.Position
	Type     string
	// Error is the error's text; errors are stored, so only the text
	// survives.
	Error string
	At    time.Time
	// Retrying marks a transient error the worker is retrying (see
	// [RetryRecorder]), rather than an event it could not handle; Stream
	// and Type are empty, and Position is the checkpoint.
	Retrying bool `json:",omitempty"`
}

func (f Failure) String() string {
	if f.Stream == "" {
		return fmt.Sprintf("after position %s: %s", f.Position, f.Error)
	}
	return fmt.Sprintf("event %s@%d (type %q, position %s): %s", f.Stream, f.Version, f.Type, f.Position, f.Error)
}

func failureOf(rec es.Record, err error) Failure {
	return Failure{
		Stream: rec.Stream, Version: rec.Version, Position: rec.Position, Type: rec.Type,
		Error: err.Error(), At: time.Now().UTC(),
	}
}

// StalledError is returned by [Worker.Run] when the projection stopped at an
// event under [PolicyStop], or found itself stalled at start.
type StalledError struct {
	Projection string
	Failure    Failure
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("projections: %s stalled at %s", e.Projection, e.Failure)
}

func (e *StalledError) Unwrap() error { return ErrStalled }

// CheckpointMovedError is returned by [Sink.Apply] when the checkpoint is not
// at the position the batch starts from.
type CheckpointMovedError struct {
	Projection       string
	Expected, Actual es.Position
}

func (e *CheckpointMovedError) Error() string {
	return fmt.Sprintf("projections: apply to %s: checkpoint is at %s, not %s", e.Projection, e.Actual, e.Expected)
}

func (e *CheckpointMovedError) Unwrap() error { return ErrCheckpointMoved }

// IsTransient reports whether err, or an error it wraps, says through a
// Transient() bool method that it is transient. A handler returns such an
// error (a remote service that timed out, say) to have its batch rolled
// back and retried with backoff, instead of following the error policy;
// the worker also retries what its [Sink] calls transient.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}
