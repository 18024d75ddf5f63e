package projections_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// signalLog is a slog handler that signals when a message is logged.
type signalLog struct {
	msg string
	ch  chan struct{}
}

func (h signalLog) Enabled(context.Context, slog.Level) bool { return true }
func (h signalLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h signalLog) WithGroup(string) slog.Handler            { return h }
func (h signalLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// blockFirst is stock whose first batch waits, inside the batch, until
// release is closed.
type blockFirst struct {
	stock
	inside, release chan struct{}
}

func (p *blockFirst) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	if p.inside != nil {
		close(p.inside)
		p.inside = nil
		<-p.release
	}
	return p.stock.HandleBatch(ctx, tx, events)
}

func TestWorkerPause(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	first := appendAdded(t, store, "a", 10)
	paused := make(chan struct{}, 1)
	log := slog.New(signalLog{msg: "projections: paused; waiting", ch: paused})
	p := &blockFirst{stock: stock{name: "s"}, inside: make(chan struct{}), release: make(chan struct{})}
	inside := p.inside
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](p), projections.Config{Logger: log, BatchSize: 10, BatchWait: -1})
	done := start(t, ctx, w)

	// Pause while the first batch is in flight: the batch finishes first.
	<-inside
	pauseErr := make(chan error, 1)
	go func() { pauseErr <- projections.Pause(t.Context(), sink, "s") }()
	close(p.release)
	if err := <-pauseErr; err != nil {
		t.Fatal(err)
	}
	cp, _ := sink.Checkpoint(t.Context(), "s")
	if cp.Position != first.Position || cp.State != projections.StatePaused {
		t.Fatalf("checkpoint after the pause %+v; want paused at %s, after the batch in flight", cp, first.Position)
	}

	// New events wait: the worker notices the pause when it applies them.
	appendAdded(t, store, "b", 20)
	select {
	case <-paused:
	case err := <-done:
		t.Fatalf("Run returned %v while paused", err)
	}
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: store, Checkpoints: sink}, "s")
	if err != nil || st.State != projections.StatePaused || st.Checkpoint != first.Position || st.LagEvents != 20 || st.LagEstimated {
		t.Errorf("status %+v, %v; want paused at %s, 20 behind", st, err, first.Position)
	}

	// Resume: the same Run goes on.
	if err := projections.Resume(t.Context(), sink, "s"); err != nil {
		t.Fatal(err)
	}
	res := appendAdded(t, store, "c", 5)
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if w.Applied() != 35 {
		t.Errorf("Applied() = %d, want 35", w.Applied())
	}
	checkAppliedOnce(t, sink, store, nil)
}
