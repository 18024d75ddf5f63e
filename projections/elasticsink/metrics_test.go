package elasticsink_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"go.opentelemetry.io/otel/attribute"

	"github.com/stratadev/strata/internal/metrictest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// The scenario of TestMixedBulkResponse, measured: one response with
// created documents, a delete of a missing one and refusals (429), then
// the refused items again, which come back as version conflicts (409).
func TestMetrics(t *testing.T) {
	t.Parallel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{elastictest.URL(t)}, Transport: &rejectOnce{RoundTripper: tr}})
	if err != nil {
		t.Fatal(err)
	}
	r := metrictest.New(t)
	e := newEnvWith(t, client, elasticsink.Config{MeterProvider: r.Provider})
	var events []any
	for i := range 6 {
		events = append(events, orderPlaced{Order: "o" + strconv.Itoa(i), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	events = append(events, orderCancelled{Order: "never-placed"})
	head := e.append(t, "order-mixed", events...)
	e.run(t, projections.Config{})
	e.waitFor(t, head)

	ms := r.Collect(t)
	item := func(action string, status int) []attribute.KeyValue {
		return []attribute.KeyValue{elasticsink.AttrAction.String(action), elasticsink.AttrStatus.Int(status)}
	}
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{"strata.elastic.bulk.requests", nil, 2},
		{"strata.elastic.bulk.items", item("index", 201), 3},
		{"strata.elastic.bulk.items", item("index", 429), 3},
		{"strata.elastic.bulk.items", item("index", 409), 3},
		{"strata.elastic.bulk.items", item("delete", 404), 1},
		{"strata.elastic.bulk.item_failures", item("index", 429), 3},
		{"strata.elastic.bulk.item_failures", nil, 3},
		{"strata.elastic.bulk.retries", nil, 3},
	} {
		if got, _ := metrictest.Value(ms, c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.attrs, got, c.want)
		}
	}
}
