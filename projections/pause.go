package projections

import (
	"context"
	"fmt"
	"log/slog"
)

// Pause marks a projection [StatePaused]. Its worker finishes the batch in
// flight, applies nothing more and waits, holding its lease, until the
// projection is resumed; it does not need a restart either way.
func Pause(ctx context.Context, cps Checkpoints, projection string) error {
	if err := cps.SetState(ctx, projection, StatePaused, nil); err != nil {
		return fmt.Errorf("projections: pause %s: %w", projection, err)
	}
	return nil
}

// Resume marks a projection [StateRunning] again and clears its last
// failure. A paused worker goes on by itself; a stalled projection needs its
// worker started again (its Run returned a [*StalledError]), usually after
// the cause was fixed or the checkpoint moved past the event: a [Runner]
// does that by itself when it notices the resume.
func Resume(ctx context.Context, cps Checkpoints, projection string) error {
	if err := cps.SetState(ctx, projection, StateRunning, nil); err != nil {
		return fmt.Errorf("projections: resume %s: %w", projection, err)
	}
	return nil
}

// waitPaused waits while the projection is paused. It returns nil when the
// projection is no longer paused or ctx ends.
func (w *Worker[Tx]) waitPaused(ctx context.Context) error {
	var changed <-chan struct{}
	if cw, ok := w.sink.(CheckpointWatcher); ok {
		if ch, stop, err := cw.WatchCheckpoint(ctx, w.name); err == nil {
			defer stop()
			changed = ch
		}
	}
	logged := false
	w.setState(WorkerPaused)
	defer w.setState(WorkerRunning)
	for {
		cp, err := w.sink.Checkpoint(ctx, w.name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read checkpoint: %w", err)
		}
		if cp.State != StatePaused {
			if logged {
				w.cfg.Logger.InfoContext(ctx, "projections: resumed", slog.String("projection", w.name), slog.String("state", string(cp.State)))
			}
			return nil
		}
		if !logged {
			logged = true
			w.cfg.Logger.InfoContext(ctx, "projections: paused; waiting", slog.String("projection", w.name),
				slog.String("checkpoint", cp.Position.String()))
		}
		if !wait(ctx, changed, w.cfg.PollInterval) {
			return nil
		}
	}
}
