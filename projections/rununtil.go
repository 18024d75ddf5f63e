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
	// a watch, which may take longer than a short tick under load.
	if every <= 0 {
		every = time.Second
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for wctx.Err() == nil {
		res := make(chan error, 1)
		go func() { res <- WaitFor(wctx, cps, w.name, pos) }()
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
			}
		}
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
