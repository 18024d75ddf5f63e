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

// CheckpointWaiter is implemented by checkpoint stores that can tell when a
// checkpoint moves, so that [WaitFor] need not poll.
type CheckpointWaiter interface {
	// WaitCheckpoint returns when the checkpoint of projection may have
	// moved, or when ctx ends.
	WaitCheckpoint(ctx context.Context, projection string) error
}

// WaitFor returns nil once the projection's checkpoint has reached pos,
// typically the position of a command's [es.AppendResult], so that a read
// sees that command's writes. It gives up when ctx ends, with an error that
// wraps ctx.Err(): bound it with a timeout. A stalled projection returns a
// [*StalledError] at once, since it will not get there on its own.
func WaitFor(ctx context.Context, cps Checkpoints, projection string, pos es.Position) error {
	d := waitMin
	for {
		cp, err := cps.Checkpoint(ctx, projection)
		if err != nil {
			return fmt.Errorf("projections: wait for %s to reach %s: %w", projection, pos, err)
		}
		if !cp.Position.Before(pos) {
			return nil
		}
		if cp.State == StateStalled {
			f := Failure{}
			if cp.Failure != nil {
				f = *cp.Failure
			}
			return &StalledError{Projection: projection, Failure: f}
		}
		if w, ok := cps.(CheckpointWaiter); ok {
			if err := w.WaitCheckpoint(ctx, projection); err != nil && ctx.Err() == nil {
				return fmt.Errorf("projections: wait for %s to reach %s: %w", projection, pos, err)
			}
		} else {
			sleep(ctx, d)
			d = min(2*d, waitMax)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("projections: wait for %s to reach %s (at %s): %w", projection, pos, cp.Position, ctx.Err())
		}
	}
}
