package projections

import (
	"context"
	"sync"
	"time"

	"github.com/stratadev/strata/es"
)

// RunUntil runs the worker until its checkpoint, as cps reports it, has
// reached pos, calling tick about every every while it waits (for progress
// reports; tick may be nil; every defaults to 1s). It returns nil once pos
// is reached, ctx.Err() when ctx ends first, or the error that stopped
// [Worker.Run]. Rebuilds use it to build a new generation up to a position
// before they swap.
func (w *Worker[Tx]) RunUntil(ctx context.Context, cps Checkpoints, pos es.Position, every time.Duration, tick func()) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		runErr error
	)
	wg.Go(func() {
		runErr = w.Run(wctx)
		cancel()
	})
	// One WaitFor for the whole wait, not one per tick: each WaitFor sets up
	// a watch, which may take longer than a short tick under load. Each
	// tick also reads the checkpoint itself, so that a watch that is slow
	// to start never keeps RunUntil from seeing pos reached.
	if every <= 0 {
		every = time.Second
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	reached := func() bool {
		cp, err := cps.Checkpoint(wctx, w.name)
		return err == nil && !cp.Position.Before(pos)
	}
	for wctx.Err() == nil {
		res := make(chan error, 1)
		waitCtx, stopWait := context.WithCancel(wctx)
		go func() { res <- WaitFor(waitCtx, cps, w.name, pos) }()
		var err error
	waiting:
		for {
			select {
			case err = <-res:
				break waiting
			case <-ticker.C:
				if tick != nil {
					tick()
				}
				if reached() {
					stopWait()
					<-res //nolint:errcheck // cancelled: it says only that
					break waiting
				}
			}
		}
		stopWait()
		if err == nil {
			break
		}
		// The projection stalled (Run is returning) or the checkpoint could
		// not be read: look again at the next tick.
		select {
		case <-ticker.C:
			if tick != nil {
				tick()
			}
		case <-wctx.Done():
		}
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	return ctx.Err()
}
