// Package metrictest reads the metrics a test's code recorded, through an
// OpenTelemetry SDK MeterProvider with a manual reader. Only tests import
// it.
package metrictest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Reader collects what a MeterProvider recorded.
type Reader struct {
	*sdkmetric.ManualReader
	// Provider is the MeterProvider to pass to the code under test.
	Provider *sdkmetric.MeterProvider
}

// New returns a reader and its provider, shut down when t ends.
func New(t testing.TB) *Reader {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &Reader{ManualReader: r, Provider: mp}
}

// Collect returns every metric recorded so far.
func (r *Reader) Collect(t testing.TB) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.ManualReader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		out = append(out, sm.Metrics...)
	}
	return out
}

// Value returns the value of the named counter or gauge at the data point
// whose attributes include attrs, the count of a histogram's recordings,
// and whether there is such a data point. Points matching attrs are
// added up.
func (r *Reader) Value(t testing.TB, name string, attrs ...attribute.KeyValue) (float64, bool) {
	t.Helper()
	return Value(r.Collect(t), name, attrs...)
}

// Value is [Reader.Value] on metrics collected before.
func Value(ms []metricdata.Metrics, name string, attrs ...attribute.KeyValue) (float64, bool) {
	var (
		sum   float64
		found bool
	)
	for _, p := range points(ms, name) {
		if has(p.attrs, attrs) {
			sum, found = sum+p.value, true
		}
	}
	return sum, found
}

// Attributes returns the attribute keys used by any data point of the named
// metric, to check that no unbounded attribute (an event or stream ID) is
// recorded.
func Attributes(ms []metricdata.Metrics, name string) map[attribute.Key]bool {
	keys := map[attribute.Key]bool{}
	for _, p := range points(ms, name) {
		for _, kv := range p.attrs.ToSlice() {
			keys[kv.Key] = true
		}
	}
	return keys
}

// point is a data point of a counter or gauge (its value) or of a
// histogram (its count of recordings).
type point struct {
	attrs attribute.Set
	value float64
}

// points returns the data points of the named metric.
func points(ms []metricdata.Metrics, name string) []point {
	var out []point
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			out = appendValues(out, d.DataPoints)
		case metricdata.Sum[float64]:
			out = appendValues(out, d.DataPoints)
		case metricdata.Gauge[int64]:
			out = appendValues(out, d.DataPoints)
		case metricdata.Gauge[float64]:
			out = appendValues(out, d.DataPoints)
		case metricdata.Histogram[int64]:
			out = appendCounts(out, d.DataPoints)
		case metricdata.Histogram[float64]:
			out = appendCounts(out, d.DataPoints)
		}
	}
	return out
}

func appendValues[N int64 | float64](out []point, dps []metricdata.DataPoint[N]) []point {
	for _, p := range dps {
		out = append(out, point{p.Attributes, float64(p.Value)})
	}
	return out
}

func appendCounts[N int64 | float64](out []point, dps []metricdata.HistogramDataPoint[N]) []point {
	for _, p := range dps {
		out = append(out, point{p.Attributes, float64(p.Count)})
	}
	return out
}

func has(s attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		v, ok := s.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}
