package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/internal/localzipkin"
	"github.com/stratadev/strata/projections"
)

// zipkinURL returns the Zipkin server of the test run (make test starts
// one), or skips the test when there is none and servers are not required.
func zipkinURL(t *testing.T) string {
	t.Helper()
	if os.Getenv("STRATA_SKIP_ZIPKIN") == "1" {
		t.Skip("STRATA_SKIP_ZIPKIN=1")
	}
	u := os.Getenv("TEST_ZIPKIN_URL")
	if u == "" {
		if !pgtest.Required() {
			t.Skip("no Zipkin server: set TEST_ZIPKIN_URL (make test starts one)")
		}
		t.Fatal("no Zipkin server: set TEST_ZIPKIN_URL (make test starts one), or STRATA_SKIP_ZIPKIN=1")
	}
	// withzipkin names the server before it is up.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := localzipkin.WaitReady(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// A product rename's trace, exported to a real Zipkin server the way the
// binaries export (cli.StartTracing), holds the HTTP request, the command's
// handle span, the append, and one apply span per projection that applied
// the rename's event, with the expected parents.
func TestRenameTraceInZipkin(t *testing.T) {
	t.Parallel()
	zipkin := zipkinURL(t)
	env := map[string]string{
		cli.EnvTracesExporter: "zipkin",
		cli.EnvZipkinEndpoint: localzipkin.SpansURL(zipkin),
	}
	tr, err := cli.StartTracing(t.Context(), cli.TracingConfig{ServiceName: "orders-test",
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	e := start(t, true, func(c *app.Config) { c.TracerProvider = tr.TracerProvider() })

	e.command("POST", "/products", `{"product_id":"tea","name":"Assam Tea","price_cents":450}`)
	e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann Smith",
		"lines":[{"product_id":"tea","quantity":2}]}`)

	// The rename, from a client span of the test's own: the request
	// carries its traceparent.
	ctx, client := tr.TracerProvider().Tracer("test").Start(t.Context(), "rename client",
		trace.WithSpanKind(trace.SpanKindClient))
	req, err := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/products/tea/rename", strings.NewReader(`{"name":"Green Tea"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	client.End()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("rename: %s", res.Status)
	}

	// The projections that handle the rename, of those this app runs.
	handles := map[string][]string{
		readmodel.OrderViewName:       readmodel.OrderViews{}.Handles(),
		readmodel.OrdersByProductName: readmodel.OrdersByProduct{}.Handles(),
		readmodel.OrderSearchName:     readmodel.OrderSearch{}.Handles(),
	}
	var appliers []string
	for _, name := range e.app.ProjectionNames() {
		if slices.Contains(handles[name], orders.TypeProductRenamed) {
			appliers = append(appliers, name)
		}
	}
	if !slices.Contains(appliers, readmodel.OrderViewName) {
		t.Fatalf("projections %v: want order_view among those that apply a rename", e.app.ProjectionNames())
	}
	wctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := projections.WaitForAll(wctx, e.app.Sink, e.app.ProjectionNames(), e.head()); err != nil {
		t.Fatal(err)
	}
	if err := tr.ForceFlush(wctx); err != nil {
		t.Fatal(err)
	}

	traceID := client.SpanContext().TraceID().String()
	want := []string{"rename client", "post /products/{id}/rename", "handle orders.renameproduct", "pgstore.append"}
	for _, p := range appliers {
		want = append(want, "projections.apply "+p)
	}
	// Zipkin stores what it receives asynchronously, and has no signal:
	// poll its API until every expected span is there.
	var spans []localzipkin.Span
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans, err = localzipkin.Trace(wctx, zipkin, traceID)
		if err != nil && !errors.Is(err, localzipkin.ErrNoTrace) {
			t.Fatal(err)
		}
		if missing := missingSpans(spans, want); len(missing) == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("trace %s lacks spans %v; it holds %v", traceID, missing, names(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}

	byName := map[string]localzipkin.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	type edge struct{ child, parent, kind string }
	edges := []edge{
		{"post /products/{id}/rename", "rename client", "SERVER"},
		{"handle orders.renameproduct", "post /products/{id}/rename", ""},
		{"pgstore.append", "handle orders.renameproduct", "CLIENT"},
	}
	for _, p := range appliers {
		edges = append(edges, edge{"projections.apply " + p, "handle orders.renameproduct", "CONSUMER"})
	}
	for _, ed := range edges {
		c, p := byName[ed.child], byName[ed.parent]
		if c.ParentID != p.ID {
			t.Errorf("span %q: parentId %s, want %s (%q)", ed.child, c.ParentID, p.ID, ed.parent)
		}
		if c.Kind != ed.kind {
			t.Errorf("span %q: kind %q, want %q", ed.child, c.Kind, ed.kind)
		}
		if c.LocalEndpoint.ServiceName != "orders-test" {
			t.Errorf("span %q: service %q, want orders-test", ed.child, c.LocalEndpoint.ServiceName)
		}
	}
	if got := byName["projections.apply "+readmodel.OrderViewName].Tags["strata.event.type"]; got != orders.TypeProductRenamed {
		t.Errorf("order_view's apply span: strata.event.type %q, want %q", got, orders.TypeProductRenamed)
	}
	if s, ok := byName["projections.apply "+readmodel.OrdersByProductName]; ok {
		t.Errorf("orders_by_product does not handle renames, yet the trace has its apply span %s", s.ID)
	}
}

// missingSpans returns the names in want that no span has.
func missingSpans(spans []localzipkin.Span, want []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.ContainsFunc(spans, func(s localzipkin.Span) bool { return s.Name == w }) {
			missing = append(missing, w)
		}
	}
	return missing
}

func names(spans []localzipkin.Span) []string {
	var n []string
	for _, s := range spans {
		n = append(n, fmt.Sprintf("%s(%s<-%s)", s.Name, s.ID, s.ParentID))
	}
	return n
}
