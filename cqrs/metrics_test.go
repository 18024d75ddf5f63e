package cqrs_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/internal/metrictest"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	r := metrictest.New(t)
	store := &interferingStore{Store: memstore.New()}
	a := newApp(store, cqrs.AggregateConfig{MaxAttempts: 3})
	a.bus.Use(cqrs.Metrics(cqrs.MetricsConfig{MeterProvider: r.Provider}))
	panics := cqrs.NewBus()
	cqrs.Handle(panics, func(context.Context, SetNote) (cqrs.Result, error) { panic("boom") })
	panics.Use(cqrs.Metrics(cqrs.MetricsConfig{MeterProvider: r.Provider}))

	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	// Two other writers get in first; the third attempt lands.
	store.interfered.Store(0)
	store.n.Store(2)
	a.mustDispatch(t, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
	// Always conflicting: two retries, then a conflict.
	store.interfered.Store(0)
	store.n.Store(1 << 30)
	if _, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "1", SKU: "tea", Quantity: 1}); err == nil {
		t.Fatal("always conflicting: no error")
	}
	store.n.Store(0)
	a.mustDispatch(t, ConfirmOrder{OrderID: "1"})
	for _, cmd := range []any{
		ConfirmOrder{OrderID: "1"},                     // rejected
		AddItem{OrderID: "1", SKU: "tea"},              // invalid
		PlaceOrder{OrderID: "1", Customer: "x"},        // exists
		AddItem{OrderID: "2", SKU: "tea", Quantity: 1}, // not found
	} {
		if _, err := a.bus.Dispatch(t.Context(), cmd); err == nil {
			t.Fatalf("dispatch %+v: no error", cmd)
		}
	}
	if _, err := panics.Dispatch(t.Context(), SetNote{OrderID: "1"}); err == nil {
		t.Fatal("panicking handler: no error")
	}

	ms := r.Collect(t)
	typ := func(s string) attribute.KeyValue { return cqrs.AttrCommandType.String("cqrs_test." + s) }
	out := cqrs.AttrOutcome.String
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{"strata.command.dispatched", []attribute.KeyValue{typ("PlaceOrder"), out(cqrs.OutcomeOK)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("PlaceOrder"), out(cqrs.OutcomeExists)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("AddItem"), out(cqrs.OutcomeOK)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("AddItem"), out(cqrs.OutcomeConflict)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("AddItem"), out(cqrs.OutcomeInvalid)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("AddItem"), out(cqrs.OutcomeNotFound)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("ConfirmOrder"), out(cqrs.OutcomeOK)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("ConfirmOrder"), out(cqrs.OutcomeRejected)}, 1},
		{"strata.command.dispatched", []attribute.KeyValue{typ("SetNote"), out(cqrs.OutcomePanic)}, 1},
		{"strata.command.dispatched", nil, 9},
		{"strata.command.duration", []attribute.KeyValue{typ("AddItem")}, 4},
		{"strata.command.conflict_retries", []attribute.KeyValue{typ("AddItem")}, 4},
		{"strata.command.conflict_retries", nil, 4},
	} {
		if got, _ := metrictest.Value(ms, c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.attrs, got, c.want)
		}
	}
	if keys := metrictest.Attributes(ms, "strata.command.dispatched"); len(keys) != 2 {
		t.Errorf("strata.command.dispatched has attributes %v, want the command type and the outcome", keys)
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, cqrs.OutcomeOK},
		{&cqrs.RejectedError{Command: "c", Err: ErrOrderConfirmed}, cqrs.OutcomeRejected},
		{&es.UnknownOutcomeError{Stream: "s", Err: context.Canceled}, cqrs.OutcomeUnknownOutcome},
		{context.DeadlineExceeded, cqrs.OutcomeCanceled},
		{ErrOrderConfirmed, cqrs.OutcomeError},
	} {
		if got := cqrs.Outcome(c.err); got != c.want {
			t.Errorf("Outcome(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
