package kafkasink

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/projections"
)

// MeterName is the instrumentation scope of the sink's metrics.
const MeterName = "github.com/stratadev/strata/projections/kafkasink"

// AttrOutcome is how a Kafka transaction of the sink ended: "committed",
// "aborted" (the handler or Kafka failed; nothing of it is visible to
// read_committed consumers) or "fenced" (another producer took over the
// transactional ID).
const AttrOutcome = attribute.Key("strata.outcome")

// sinkMetrics are the sink's instruments.
type sinkMetrics struct {
	transactions metric.Int64Counter
	messages     metric.Int64Counter
}

func newSinkMetrics(mp metric.MeterProvider) *sinkMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	sm := &sinkMetrics{}
	var err error
	sm.transactions, err = m.Int64Counter("strata.kafka.transactions", metric.WithUnit("{transaction}"),
		metric.WithDescription("Kafka transactions of a projection's batches, by outcome."))
	handle(err)
	sm.messages, err = m.Int64Counter("strata.kafka.messages.published", metric.WithUnit("{message}"),
		metric.WithDescription("Messages published in committed transactions, the checkpoint record not counted."))
	handle(err)
	return sm
}

// transaction records the end of a batch's transaction for projection.
func (sm *sinkMetrics) transaction(ctx context.Context, projection, outcome string, messages int) {
	p := projections.AttrProjection.String(projection)
	sm.transactions.Add(ctx, 1, metric.WithAttributes(p, AttrOutcome.String(outcome)))
	if messages > 0 {
		sm.messages.Add(ctx, int64(messages), metric.WithAttributes(p))
	}
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop a projection.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
