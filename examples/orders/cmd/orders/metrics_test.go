package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

// syncBuffer is an output a test reads while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// scrape reads the metrics at url with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", url, err)
	}
	return mfs
}

// value returns the value of family name at the sample whose labels
// include labels (name, value pairs): a counter's or gauge's value, or a
// histogram's sum; and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
next:
	for _, m := range mfs[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return m.Histogram.GetSampleSum(), true
		}
	}
	return 0, false
}

var servingAt = regexp.MustCompile(`serving (metrics|the order API) at (http://\S+)`)

// TestServeMetrics runs orders serve with --metrics-addr, appends events
// through the API, causes a conflict and lets the projections catch up;
// then the scraped metrics must say so.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	_, schema := pgtest.NewSchema(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	env := map[string]string{cli.EnvDatabaseURL: pgtest.URL(t), cli.EnvSchema: schema}
	root := newRoot(cli.Config{Stdout: stdout, Stderr: stderr, Getenv: func(k string) string { return env[k] },
		IsTerminal: func(io.Writer) bool { return false }}, readmodel.OrderSearch{})
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, root, []string{"serve", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"})
	}()
	urls := map[string]string{}
	deadline := time.Now().Add(time.Minute)
	for len(urls) < 2 {
		for _, m := range servingAt.FindAllStringSubmatch(stdout.String(), -1) {
			urls[m[1]] = m[2]
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d early\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not say where it serves:\n%s", stdout)
		}
		time.Sleep(10 * time.Millisecond) // serve prints once it listens; nothing to wait on
	}
	api, metrics := urls["the order API"], urls["metrics"]

	post := func(path, body string, want int) {
		t.Helper()
		res, err := http.Post(api+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("POST %s: %s %s, want %d", path, res.Status, b, want)
		}
	}
	post("/products", `{"product_id":"tea","name":"Tea","price_cents":450}`, http.StatusAccepted)
	const orders = 5
	for i := range orders {
		post("/orders", fmt.Sprintf(`{"order_id":"o%d","customer_id":"c","customer_name":"Ann","lines":[{"product_id":"tea","quantity":1}]}`, i), http.StatusAccepted)
	}
	// Two commands on one stream version: the second order o0 expects no
	// stream, as the first did, and conflicts.
	post("/orders", `{"order_id":"o0","customer_id":"c","customer_name":"Bob","lines":[{"product_id":"tea","quantity":1}]}`, http.StatusConflict)
	const appended = 1 + orders

	// Wait for both projections to catch up: the scrape is the only
	// signal.
	var mfs map[string]*dto.MetricFamily
	view := []string{"strata_projection", readmodel.OrderViewName}
	byProduct := []string{"strata_projection", readmodel.OrdersByProductName}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		mfs = scrape(t, metrics)
		applied, _ := value(mfs, "strata_projection_events_applied_total", view...)
		lag, ok := value(mfs, "strata_projection_lag", view...)
		lag2, ok2 := value(mfs, "strata_projection_lag", byProduct...)
		if applied == appended && ok && lag == 0 && ok2 && lag2 == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projections did not catch up: order_view applied %v, lag %v; orders_by_product lag %v", applied, lag, lag2)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"strata_projection_events_applied_total", view, appended},
		{"strata_projection_lag", view, 0},
		{"strata_projection_lag_age_seconds", view, 0},
		{"strata_projection_state", append(view, "strata_projection_state", "running"), 1},
		{"strata_projection_lag", byProduct, 0},
		{"strata_store_append_events", nil, appended}, // the sum of the histogram
		{"strata_store_appends_total", []string{"strata_outcome", "appended"}, appended},
		{"strata_store_appends_total", []string{"strata_outcome", "conflict"}, 1},
		{"strata_command_dispatched_total", []string{"strata_command_type", "orders.PlaceOrder", "strata_outcome", "ok"}, orders},
		{"strata_command_dispatched_total", []string{"strata_command_type", "orders.PlaceOrder", "strata_outcome", "exists"}, 1},
	} {
		got, ok := value(mfs, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after interrupt\nstderr:\n%s", code, stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop")
	}
	if res, err := http.Get(metrics); err == nil {
		res.Body.Close()
		t.Errorf("%s still answers after serve returned", metrics)
	}
}
