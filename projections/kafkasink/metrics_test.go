package kafkasink_test

import (
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/stratadev/strata/internal/metrictest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
)

// A worker publishes, then another producer fences it: the metrics count
// the committed transactions, the messages and the fence.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := metrictest.New(t)
	cfg := e.cfg
	cfg.MeterProvider = r.Provider
	sink := e.newSink(t, cfg)
	e.place(t, "order-1", 1)
	e.place(t, "order-2", 1)
	head := e.place(t, "order-3", 1)
	_, done := e.run(t, sink, projections.Config{})
	e.waitFor(t, head)
	msgs := len(readAll(t, e.url, e.proj.topic))

	intruder := e.newSink(t, e.cfg)
	if err := intruder.Apply(t.Context(), projections.ApplyParams{Projection: e.proj.name, From: head, To: head}, nil); err != nil {
		t.Fatal(err)
	}
	e.place(t, "order-4", 1)
	select {
	case err := <-done:
		if !errors.Is(err, kafkasink.ErrFenced) {
			t.Fatalf("Run returned %v, want ErrFenced", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the fenced worker did not stop within 60s")
	}

	ms := r.Collect(t)
	p := projections.AttrProjection.String(e.proj.name)
	outcome := func(o string) []attribute.KeyValue { return []attribute.KeyValue{p, kafkasink.AttrOutcome.String(o)} }
	if got, _ := metrictest.Value(ms, "strata.kafka.messages.published", p); got != float64(msgs) || msgs == 0 {
		t.Errorf("strata.kafka.messages.published = %v, want the %d messages on the topic", got, msgs)
	}
	if got, _ := metrictest.Value(ms, "strata.kafka.transactions", outcome("committed")...); got < 1 {
		t.Errorf("strata.kafka.transactions{committed} = %v, want at least 1", got)
	}
	if got, _ := metrictest.Value(ms, "strata.kafka.transactions", outcome("fenced")...); got != 1 {
		t.Errorf("strata.kafka.transactions{fenced} = %v, want 1", got)
	}
}
