package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// slowWatch is a sink whose checkpoint watcher takes longer to start than
// RunUntil's interval, like a listener that must open a connection on a
// loaded machine.
type slowWatch struct{ *memsink.Sink }

func (slowWatch) WatchCheckpoint(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// RunUntil returns once the position is reached even when every wait for
// it ends before the watcher is ready: it looks at the checkpoint itself.
func TestRunUntilWithASlowWatcher(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	last := appendAdded(t, store, "a", 50)
	w := projections.NewWorker(store, newRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ticks := 0
	if err := w.RunUntil(ctx, slowWatch{sink}, last.Position, time.Millisecond, func() { ticks++ }); err != nil {
		t.Fatalf("RunUntil = %v (after %d ticks); want nil once the worker reached %s", err, ticks, last.Position)
	}
	if cp, err := sink.Checkpoint(t.Context(), "s"); err != nil || cp.Position.Before(last.Position) {
		t.Errorf("checkpoint after RunUntil %+v, %v; want at least %s", cp, err, last.Position)
	}
}
