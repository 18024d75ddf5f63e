package projections

import (
	"context"
	"sync"
	"time"

	"github.com/stratadev/strata/es"
)

// RunUntil runs the worker until its checkpoint, as cps reports it, has
// reached pos, calling tick about every every while it waits (for progress
// reports; tick may be nil). It returns nil once pos is reached, ctx.Err()
// when ctx ends first, or the error that stopped [Worker.Run]. Rebuilds use
// it to build a new generation up to a position before they swap.
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
	for {
		// Look at the checkpoint first: a wait may end before a
		// checkpoint watcher is even ready (a listener that has to
		// connect, when every is short), and then it never looks.
		if cp, err := cps.Checkpoint(wctx, w.name); err == nil && !cp.Position.Before(pos) {
			break
		}
		tctx, tcancel := context.WithTimeout(wctx, every)
		err := WaitFor(tctx, cps, w.name, pos)
		tcancel()
		if err == nil || wctx.Err() != nil {
			break
		}
		if tick != nil {
			tick()
		}
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	return ctx.Err()
}
