package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/internal/metrictest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// eventually polls cond until it holds: the gauges are read from the
// worker's memory, which has no signal of its own for "updated".
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metric(t *testing.T, r *metrictest.Reader, name string, attrs ...attribute.KeyValue) float64 {
	t.Helper()
	v, ok := r.Value(t, name, attrs...)
	if !ok {
		t.Fatalf("no data point of %s with %v", name, attrs)
	}
	return v
}

func TestWorkerMetrics(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", 1200)
	if _, err := store.Append(t.Context(), "a", es.Any, es.EventData{Type: "NoteTaken", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r := metrictest.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(store, newRegistry(), sink, stock{name: "stock"},
		projections.Config{Logger: quiet, BatchSize: 100, MeterProvider: r.Provider})
	done := start(t, ctx, w)
	res := appendAdded(t, store, "b", 50)
	waitFor(t, sink, "stock", res.Position)
	p := projections.AttrProjection.String("stock")
	eventually(t, "lag 0 after catch-up", func() bool {
		lag, ok := r.Value(t, "strata.projection.lag", p)
		return ok && lag == 0
	})

	ms := r.Collect(t)
	want := map[string]float64{
		"strata.projection.events.applied": 1250, // NoteTaken is not the projection's
		"strata.projection.lag":            0,
		"strata.projection.lag.age":        0,
		"strata.projection.retries":        0,
		"strata.projection.dead_letters":   0,
	}
	for name, v := range want {
		got, _ := metrictest.Value(ms, name, p)
		if got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	batches, _ := metrictest.Value(ms, "strata.projection.batches", p)
	durations, _ := metrictest.Value(ms, "strata.projection.batch.duration", p)
	if batches < 13 || durations != batches {
		t.Errorf("strata.projection.batches = %v and batch.duration count = %v; want the same, at least 13", batches, durations)
	}
	for _, s := range []string{"running", "stalled", "paused", "rebuilding", "stopped"} {
		want := 0.0
		if s == "running" {
			want = 1
		}
		if got, _ := metrictest.Value(ms, "strata.projection.state", p, projections.AttrState.String(s)); got != want {
			t.Errorf("strata.projection.state{state=%s} = %v, want %v", s, got, want)
		}
	}
	for _, name := range []string{"strata.projection.events.applied", "strata.projection.batches", "strata.projection.lag"} {
		if keys := metrictest.Attributes(ms, name); len(keys) != 1 || !keys[projections.AttrProjection] {
			t.Errorf("%s has attributes %v, want strata.projection alone", name, keys)
		}
	}

	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, r, "strata.projection.state", p, projections.AttrState.String("stopped")); got != 1 {
		t.Errorf("strata.projection.state{state=stopped} after Run returned = %v, want 1", got)
	}
}

func TestWorkerMetricsStalledLag(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", 5)
	if _, err := store.Append(t.Context(), "a", es.Any, es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":"many"}`)}); err != nil {
		t.Fatal(err)
	}
	// Far more than a page behind the bad event: the lag counts the events
	// the worker has not read, too.
	appendAdded(t, store, "a", 100)
	r := metrictest.New(t)
	w := projections.NewWorker(store, newRegistry(), sink, stock{name: "s"},
		projections.Config{Logger: quiet, BatchSize: 10, MeterProvider: r.Provider})
	if err := waitDone(t, start(t, t.Context(), w)); !errors.Is(err, projections.ErrStalled) {
		t.Fatalf("Run = %v, want a stall", err)
	}
	p := projections.AttrProjection.String("s")
	ms := r.Collect(t)
	if got, _ := metrictest.Value(ms, "strata.projection.lag", p); got != 101 {
		t.Errorf("strata.projection.lag of a stalled projection = %v, want 101", got)
	}
	if got, _ := metrictest.Value(ms, "strata.projection.lag.age", p); got <= 0 {
		t.Errorf("strata.projection.lag.age of a stalled projection = %v, want > 0", got)
	}
	if got, _ := metrictest.Value(ms, "strata.projection.state", p, projections.AttrState.String("stalled")); got != 1 {
		t.Errorf("strata.projection.state{state=stalled} = %v, want 1", got)
	}
	if got, _ := metrictest.Value(ms, "strata.projection.events.applied", p); got != 5 {
		t.Errorf("strata.projection.events.applied = %v, want 5", got)
	}
}

func TestWorkerMetricsDeadLettersAndRetries(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", 3)
	if _, err := store.Append(t.Context(), "a", es.Any, es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":"many"}`)}); err != nil {
		t.Fatal(err)
	}
	res := appendAdded(t, store, "a", 3)
	failures := 0
	p := transientStock{stock{name: "s", fail: func(projections.Event) bool {
		// The worker calls the handler from one goroutine.
		failures++
		return failures <= 2
	}}}
	r := metrictest.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](p),
		projections.Config{Logger: quiet, ErrorPolicy: projections.PolicyDeadLetter, MeterProvider: r.Provider,
			RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	done := start(t, ctx, w)
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	attr := projections.AttrProjection.String("s")
	ms := r.Collect(t)
	for name, want := range map[string]float64{
		"strata.projection.dead_letters":   1,
		"strata.projection.retries":        2,
		"strata.projection.events.applied": 6,
	} {
		if got, _ := metrictest.Value(ms, name, attr); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
