package cqrs_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stratadev/strata/cqrs"
)

// Each conflict retry shows as an event on the command's handle span.
func TestTracingConflictRetryEvents(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	wrapped := &interferingStore{Store: backends[0].open(t)}
	a := newApp(wrapped, cqrs.AggregateConfig{})
	a.bus.Use(cqrs.Tracing(cqrs.TracingConfig{TracerProvider: tp}))
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	wrapped.interfered.Store(0)
	wrapped.n.Store(2) // two conflicts, then the third attempt lands
	a.mustDispatch(t, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})

	var handle sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "handle cqrs_test.AddItem" {
			handle = s
		}
	}
	if handle == nil {
		t.Fatal("no span handle cqrs_test.AddItem")
	}
	var attempts []int64
	for _, e := range handle.Events() {
		if e.Name != cqrs.ConflictRetryEvent {
			continue
		}
		for _, kv := range e.Attributes {
			if kv.Key == "strata.attempt" {
				attempts = append(attempts, kv.Value.AsInt64())
			}
		}
	}
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("conflict retry events with attempts %v, want [1 2]", attempts)
	}
}
