package consume

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the consumers' metrics.
const MeterName = "github.com/stratadev/strata/projections/kafkasink/consume"

// AttrGroup is the consumer group a consumer's metrics belong to.
const AttrGroup = attribute.Key("strata.consumer.group")

// consumerMetrics are a consumer's instruments.
type consumerMetrics struct {
	consumed    metric.Int64Counter
	deadLetters metric.Int64Counter
	attrs       metric.MeasurementOption

	mu  sync.Mutex
	lag map[partitionKey]int64 // after the last poll handled, by partition
}

func newConsumerMetrics(mp metric.MeterProvider, group string) *consumerMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	cm := &consumerMetrics{attrs: metric.WithAttributeSet(attribute.NewSet(AttrGroup.String(group))), lag: map[partitionKey]int64{}}
	var err error
	cm.consumed, err = m.Int64Counter("strata.consumer.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages consumed and committed (applied, dispatched, skipped or dead-lettered)."))
	handle(err)
	cm.deadLetters, err = m.Int64Counter("strata.consumer.dead_letters", metric.WithUnit("{message}"),
		metric.WithDescription("Messages moved to the dead-letter topic."))
	handle(err)
	lag, err := m.Int64ObservableGauge("strata.consumer.lag", metric.WithUnit("{message}"),
		metric.WithDescription("Messages of the group's partitions after those it handled, as of the last poll it handled."))
	handle(err)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		cm.mu.Lock()
		defer cm.mu.Unlock()
		if len(cm.lag) == 0 {
			return nil
		}
		var n int64
		for _, v := range cm.lag {
			n += v
		}
		o.ObserveInt64(lag, n, cm.attrs)
		return nil
	}, lag)
	handle(err)
	return cm
}

// committed records n messages of partition k committed, up to next,
// whose high watermark was high.
func (cm *consumerMetrics) committed(ctx context.Context, k partitionKey, n, next, high int64) {
	cm.mu.Lock()
	cm.lag[k] = max(high-next, 0)
	cm.mu.Unlock()
	if n > 0 {
		cm.consumed.Add(ctx, n, cm.attrs)
	}
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop a consumer.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
