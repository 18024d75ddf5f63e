package elasticsink

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the sink's metrics.
const MeterName = "github.com/stratadev/strata/projections/elasticsink"

// Attribute keys of the sink's metrics.
const (
	// AttrAction is a bulk item's action: index, create, update or delete.
	AttrAction = attribute.Key("strata.elastic.action")
	// AttrStatus is a bulk item's HTTP status code, as OpenTelemetry's
	// HTTP conventions name it.
	AttrStatus = attribute.Key("http.response.status_code")
)

// sinkMetrics are the sink's instruments.
type sinkMetrics struct {
	requests metric.Int64Counter
	items    metric.Int64Counter
	failures metric.Int64Counter
	retries  metric.Int64Counter
}

func newSinkMetrics(mp metric.MeterProvider) *sinkMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	sm := &sinkMetrics{}
	var err error
	sm.requests, err = m.Int64Counter("strata.elastic.bulk.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Bulk requests sent to Elasticsearch that got a response."))
	handle(err)
	sm.items, err = m.Int64Counter("strata.elastic.bulk.items", metric.WithUnit("{item}"),
		metric.WithDescription("Items of bulk responses, by action and status (409: the stored document was as new or newer)."))
	handle(err)
	sm.failures, err = m.Int64Counter("strata.elastic.bulk.item_failures", metric.WithUnit("{item}"),
		metric.WithDescription("Items Elasticsearch refused, by action and status: those with 429 or 5xx are retried."))
	handle(err)
	sm.retries, err = m.Int64Counter("strata.elastic.bulk.retries", metric.WithUnit("{item}"),
		metric.WithDescription("Refused items sent again."))
	handle(err)
	return sm
}

// itemKey counts the items of a bulk response by action and status.
type itemKey struct {
	action string
	status int
}

// response records the items of one bulk response; failed are those
// refused (neither 2xx, nor 409, nor 404 for a delete).
func (sm *sinkMetrics) response(ctx context.Context, all, failed map[itemKey]int64) {
	sm.requests.Add(ctx, 1)
	for k, n := range all {
		sm.items.Add(ctx, n, metric.WithAttributes(AttrAction.String(k.action), AttrStatus.Int(k.status)))
	}
	for k, n := range failed {
		sm.failures.Add(ctx, n, metric.WithAttributes(AttrAction.String(k.action), AttrStatus.Int(k.status)))
	}
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop a projection.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
