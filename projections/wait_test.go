package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

func TestWaitForAll(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	res := appendAdded(t, store, "a", 20)
	ctx, cancel := context.WithCancel(t.Context())
	done1 := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, stock{name: "first"}, projections.Config{Logger: quiet}))
	done2 := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, stock{name: "second"}, projections.Config{Logger: quiet}))
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := projections.WaitForAll(wctx, sink, []string{"first", "second"}, res.Position); err != nil {
		t.Fatalf("WaitForAll with both workers running = %v, want nil", err)
	}
	for _, name := range []string{"first", "second"} {
		if cp, _ := sink.Checkpoint(t.Context(), name); cp.Position.Before(res.Position) {
			t.Errorf("checkpoint of %s = %s after WaitForAll, want %s or later", name, cp.Position, res.Position)
		}
	}
	cancel()
	for _, done := range []<-chan error{done1, done2} {
		if err := waitDone(t, done); err != nil {
			t.Fatal(err)
		}
	}

	// "third" has no worker: the bound expires on it, and the error says so.
	bctx, bcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer bcancel()
	err := projections.WaitForAll(bctx, sink, []string{"first", "third", "second"}, res.Position)
	var behind *projections.BehindError
	if !errors.As(err, &behind) {
		t.Fatalf("WaitForAll with third behind = %v, want a BehindError", err)
	}
	want := projections.BehindError{Projection: "third", Want: res.Position, Checkpoint: es.Start, Err: context.DeadlineExceeded}
	if *behind != want {
		t.Errorf("BehindError = %+v, want %+v", *behind, want)
	}
	if !errors.Is(err, projections.ErrBehind) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForAll error %v does not wrap both ErrBehind and DeadlineExceeded", err)
	}
}

func TestWaitForAllStalled(t *testing.T) {
	t.Parallel()
	sink := memsink.New()
	f := projections.Failure{Stream: "a", Version: 3, Type: "ItemAdded", Error: "boom"}
	if err := sink.SetState(t.Context(), "broken", projections.StateStalled, &f); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := projections.WaitForAll(ctx, sink, []string{"broken"}, es.Position{Commit: 1, Prepare: 1})
	var stalled *projections.StalledError
	if !errors.As(err, &stalled) || stalled.Projection != "broken" {
		t.Fatalf("WaitForAll on a stalled projection = %v, want its StalledError", err)
	}
	if ctx.Err() != nil {
		t.Error("WaitForAll on a stalled projection waited for the bound")
	}
}
