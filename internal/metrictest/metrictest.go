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
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+float64(p.Value), true
				}
			}
		case metricdata.Sum[float64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+p.Value, true
				}
			}
		case metricdata.Gauge[int64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+float64(p.Value), true
				}
			}
		case metricdata.Gauge[float64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+p.Value, true
				}
			}
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+float64(p.Count), true
				}
			}
		case metricdata.Histogram[int64]:
			for _, p := range d.DataPoints {
				if has(p.Attributes, attrs) {
					sum, found = sum+float64(p.Count), true
				}
			}
		}
	}
	return sum, found
}

// Attributes returns the attribute keys used by any data point of the named
// metric, to check that no unbounded attribute (an event or stream ID) is
// recorded.
func Attributes(ms []metricdata.Metrics, name string) map[attribute.Key]bool {
	keys := map[attribute.Key]bool{}
	add := func(s attribute.Set) {
		for _, kv := range s.ToSlice() {
			keys[kv.Key] = true
		}
	}
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		case metricdata.Sum[float64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		case metricdata.Gauge[int64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		case metricdata.Gauge[float64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		case metricdata.Histogram[int64]:
			for _, p := range d.DataPoints {
				add(p.Attributes)
			}
		}
	}
	return keys
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
