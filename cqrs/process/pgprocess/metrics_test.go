package pgprocess_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/internal/metrictest"
	"github.com/stratadev/strata/projections"
)

// A runner counts its commands by outcome, its deadlines fired and
// dropped with how late they fired, and its follower reports the worker's
// metrics through the same MeterProvider.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := metrictest.New(t)
	start(t, e.runner(pgprocess.Config{MeterProvider: m.Provider}))

	e.place(t, PlaceOrder{OrderID: "paid", Amount: 1})                                      // capture, confirm: 2 dispatched
	e.place(t, PlaceOrder{OrderID: "declined", Amount: 101})                                // capture rejected, cancel dispatched
	e.place(t, PlaceOrder{OrderID: "late", PayWithin: 50 * time.Millisecond, Manual: true}) // fires: cancel dispatched
	e.place(t, PlaceOrder{OrderID: "gone", PayWithin: time.Second, Manual: true})
	if _, err := e.bus.Dispatch(t.Context(), ConfirmOrder{OrderID: "gone"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"paid", "declined", "late", "gone"} {
		e.waitForEnd(t, id)
	}
	// The dropped deadline of "gone" has no signal of its own: a later
	// deadline that fires shows that the loop got past it.
	e.place(t, PlaceOrder{OrderID: "later", PayWithin: 1500 * time.Millisecond, Manual: true})
	e.waitForEnd(t, "later")
	// The firing transaction records its count once it has committed,
	// which may be after the command it decided was handled: wait for the
	// count. The reader has no signal, so poll it.
	ms := waitMetric(t, m, "strata.process.deadlines", 2, pgprocess.AttrOutcome.String(pgprocess.DeadlineFired))

	for _, c := range []struct {
		name    string
		outcome string
		want    float64
	}{
		{"strata.process.commands", pgprocess.OutcomeDispatched, 5}, // 2 paid, 1 declined, 1 late, 1 later
		{"strata.process.commands", pgprocess.OutcomeRejected, 1},
		{"strata.process.commands", pgprocess.OutcomeRetry, 0},
		{"strata.process.deadlines", pgprocess.DeadlineFired, 2},
		{"strata.process.deadlines", pgprocess.DeadlineDropped, 1},
	} {
		got, _ := metrictest.Value(ms, c.name, pgprocess.AttrProcess.String("checkout"), pgprocess.AttrOutcome.String(c.outcome))
		if got != c.want {
			t.Errorf("%s{%s}: %v; want %v", c.name, c.outcome, got, c.want)
		}
	}
	if n, ok := metrictest.Value(ms, "strata.process.deadline.delay", pgprocess.AttrProcess.String("checkout")); !ok || n != 2 {
		t.Errorf("strata.process.deadline.delay recorded %v times (found %v); want 2", n, ok)
	}
	if n, ok := metrictest.Value(ms, "strata.process.command.duration", pgprocess.AttrProcess.String("checkout")); !ok || n != 6 {
		t.Errorf("strata.process.command.duration recorded %v times (found %v); want 6", n, ok)
	}
	if n, ok := metrictest.Value(ms, "strata.projection.events.applied", projections.AttrProjection.String(pgprocess.ProjectionPrefix+"checkout")); !ok || n == 0 {
		t.Errorf("the follower's strata.projection.events.applied is %v (found %v); want it through the runner's MeterProvider", n, ok)
	}
}

// waitMetric polls m until the named counter reaches want at the points
// with attrs, and returns what it collected then.
func waitMetric(t *testing.T, m *metrictest.Reader, name string, want float64, attrs ...attribute.KeyValue) []metricdata.Metrics {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms := m.Collect(t)
		if got, _ := metrictest.Value(ms, name, attrs...); got >= want || time.Now().After(deadline) {
			return ms
		}
		time.Sleep(10 * time.Millisecond) // polling the reader, which has no signal
	}
}
