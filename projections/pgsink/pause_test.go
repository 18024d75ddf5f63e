package pgsink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestPauseResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 100)
	inside, release := make(chan struct{}), make(chan struct{})
	first := true
	p := stock{name: "stock", before: func(ctx context.Context, _ *pgsink.Tx, _ []projections.Event) error {
		if first {
			first = false
			close(inside)
			<-release
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, BatchSize: 10, BatchWait: -1})
	done := start(ctx, w)
	<-inside
	// The pause waits for the batch in flight, which holds the checkpoint.
	paused := make(chan error, 1)
	go func() { paused <- projections.Pause(t.Context(), e.sink, "stock") }()
	close(release)
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "stock")
	if err != nil || cp.State != projections.StatePaused || cp.Position.IsZero() {
		t.Fatalf("checkpoint %+v, %v; want paused after the first batch", cp, err)
	}
	// Nothing more is applied while paused: a batch applied now would be
	// refused, and the worker waits for a change of state.
	err = e.sink.Apply(t.Context(), projections.ApplyParams{Projection: "stock", From: cp.Position, To: head},
		func(context.Context, *pgsink.Tx) error { return nil })
	if !errors.Is(err, projections.ErrPaused) {
		t.Fatalf("Apply while paused = %v, want ErrPaused", err)
	}
	if err := projections.Resume(t.Context(), e.sink, "stock"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "stock", head)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v; want it to go on after the pause", err)
	default:
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if w.Applied() != 100 {
		t.Errorf("Applied() = %d, want 100", w.Applied())
	}
	e.checkAppliedOnce(t, nil)
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A watcher is signalled by a change of its own projection's checkpoint.
	changed, stop, err := e.sink.WatchCheckpoint(t.Context(), "watched")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sink.Reset(t.Context(), "watched", es.Position{Commit: 1, Prepare: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification of the checkpoint's change")
	}
	stop()

	// Timeout.
	res := e.appendOne(t, "a", "ItemAdded", `{"sku":"a","qty":1}`)
	tctx, tcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer tcancel()
	if err := projections.WaitFor(tctx, e.sink, "stock", res.Position); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with no worker = %v, want DeadlineExceeded", err)
	}
	// Success: waiters wake up as the worker commits.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, projections.Config{Logger: quiet}))
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer wcancel()
			errs <- projections.WaitFor(wctx, e.sink, "stock", res.Position)
		}()
	}
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}
