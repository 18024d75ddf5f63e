package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/stratadev/strata/es"
)

// Backoff of [WaitFor] between looks at the checkpoint.
const (
	waitMin = 2 * time.Millisecond
	waitMax = 100 * time.Millisecond
)

// CheckpointWatcher is implemented by checkpoint stores that can tell when a
// checkpoint moves, so that [WaitFor], paused and idle workers, and a
// [Runner] waiting for a stalled projection to be resumed need not poll
// often.
type CheckpointWatcher interface {
	// WatchCheckpoint returns, once it is watching, a channel that
	// receives a value when the checkpoint or state of projection may have
	// changed after the call, and a function that stops watching. Signals
	// may be spurious or coalesced; the channel is never closed. On error
	// the caller polls instead.
	WatchCheckpoint(ctx context.Context, projection string) (changed <-chan struct{}, stop func(), err error)
}

// WaitFor returns nil once the checkpoint of the projection name has
// reached pos, typically the position of a command's [es.AppendResult], so
// that a read sees that command's writes. It gives up when ctx ends, with a
// [*BehindError] that wraps ctx.Err(): bound it with a timeout. A stalled
// projection returns a [*StalledError] at once, since it will not get there
// on its own.
//
// When cps is a [CheckpointWatcher], WaitFor wakes up when the checkpoint
// moves, and looks again every 100ms in case a signal was lost; otherwise
// it polls, from every 2ms up to every 100ms.
func WaitFor(ctx context.Context, cps Checkpoints, name string, pos es.Position) error {
	var changed <-chan struct{}
	if w, ok := cps.(CheckpointWatcher); ok {
		if ch, stop, err := w.WatchCheckpoint(ctx, name); err == nil {
			defer stop()
			changed = ch
		}
	}
	d := waitMin
	var at es.Position // the checkpoint as last read
	for {
		cp, err := cps.Checkpoint(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return &BehindError{Projection: name, Want: pos, Checkpoint: at, Err: ctx.Err()}
			}
			return fmt.Errorf("projections: wait for %s to reach %s: %w", name, pos, err)
		}
		if !cp.Position.Before(pos) {
			return nil
		}
		at = cp.Position
		if cp.State == StateStalled {
			f := Failure{}
			if cp.Failure != nil {
				f = *cp.Failure
			}
			return &StalledError{Projection: name, Failure: f}
		}
		if changed != nil {
			d = waitMax
		}
		wait(ctx, changed, d)
		d = min(2*d, waitMax)
		if ctx.Err() != nil {
			return &BehindError{Projection: name, Want: pos, Checkpoint: at, Err: ctx.Err()}
		}
	}
}

// WaitForAll is [WaitFor] for several projections under the one bound of
// ctx: it returns nil once the checkpoint of every projection in names has
// reached pos. When ctx ends first, the [*BehindError] names the projection
// that had not; a stalled projection returns its [*StalledError] at once.
func WaitForAll(ctx context.Context, cps Checkpoints, names []string, pos es.Position) error {
	// One after the other: a checkpoint that reached pos stays there (a
	// reset aside), so when the last one is there, all of them are.
	for _, name := range names {
		if err := WaitFor(ctx, cps, name, pos); err != nil {
			return err
		}
	}
	return nil
}

// wait returns when changed receives, d has passed or ctx ends. It
// reports false when ctx ended first.
func wait(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
