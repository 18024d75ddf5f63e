package pgprocess

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of a runner's metrics.
const MeterName = "github.com/stratadev/strata/cqrs/process/pgprocess"

// Attribute keys of a runner's metrics.
const (
	// AttrProcess names the process manager.
	AttrProcess = attribute.Key("strata.process")
	// AttrOutcome is what became of a command dispatch (OutcomeDispatched,
	// OutcomeRejected, OutcomeRetry) or of a due deadline (DeadlineFired,
	// DeadlineDropped).
	AttrOutcome = attribute.Key("strata.outcome")
)

// Outcomes of a command dispatch, the values of [AttrOutcome] on
// strata.process.commands.
const (
	OutcomeDispatched = "dispatched" // the bus handled it
	OutcomeRejected   = "rejected"   // refused for good: decide gets it
	OutcomeRetry      = "retry"      // failed transiently: tried again later
)

// runnerMetrics are a runner's instruments; the follower's are those of its
// projections.Worker (strata.projection.* with strata.projection
// "process:<name>").
type runnerMetrics struct {
	commands      metric.Int64Counter
	dispatchTime  metric.Float64Histogram
	deadlines     metric.Int64Counter
	deadlineDelay metric.Float64Histogram
	outcomes      map[string]metric.MeasurementOption
	process       metric.MeasurementOption
}

func newRunnerMetrics(mp metric.MeterProvider, name string) *runnerMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	rm := &runnerMetrics{
		process:  metric.WithAttributeSet(attribute.NewSet(AttrProcess.String(name))),
		outcomes: map[string]metric.MeasurementOption{},
	}
	for _, o := range []string{OutcomeDispatched, OutcomeRejected, OutcomeRetry, DeadlineFired, DeadlineDropped} {
		rm.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(AttrProcess.String(name), AttrOutcome.String(o)))
	}
	var err error
	rm.commands, err = m.Int64Counter("strata.process.commands", metric.WithUnit("{command}"),
		metric.WithDescription("Commands of the process manager dispatched on the bus, by outcome; a command dispatched again after a crash counts again."))
	handle(err)
	rm.dispatchTime, err = m.Float64Histogram("strata.process.command.duration", metric.WithUnit("s"),
		metric.WithDescription("Time the bus took to handle one of the process manager's commands."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	handle(err)
	rm.deadlines, err = m.Int64Counter("strata.process.deadlines", metric.WithUnit("{deadline}"),
		metric.WithDescription("Due deadlines closed, by outcome: fired, or dropped because the instance no longer runs."))
	handle(err)
	rm.deadlineDelay, err = m.Float64Histogram("strata.process.deadline.delay", metric.WithUnit("s"),
		metric.WithDescription("How late a deadline fired, on the database's clock: the firing transaction's start minus the due time."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	handle(err)
	return rm
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop a process manager.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// dispatched records a bus dispatch that took d and ended as outcome.
func (rm *runnerMetrics) dispatched(ctx context.Context, outcome string, d time.Duration) {
	rm.commands.Add(ctx, 1, rm.outcomes[outcome])
	rm.dispatchTime.Record(ctx, d.Seconds(), rm.process)
}

// closed records committed deadlines: how many fired, with how late each
// was, and how many were dropped.
func (rm *runnerMetrics) closed(ctx context.Context, delays []float64, dropped int) {
	if len(delays) > 0 {
		rm.deadlines.Add(ctx, int64(len(delays)), rm.outcomes[DeadlineFired])
		for _, d := range delays {
			rm.deadlineDelay.Record(ctx, max(d, 0), rm.process)
		}
	}
	if dropped > 0 {
		rm.deadlines.Add(ctx, int64(dropped), rm.outcomes[DeadlineDropped])
	}
}
