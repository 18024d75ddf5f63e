package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/internal/localzipkin"
)

const zipkinHowTo = "To turn it on: install Java 17+ and mvn, then run `make demo` again " +
	"(scripts/ensure-zipkin.sh fetches Zipkin), or set " + cli.EnvTracesExporter + " and its endpoint to a backend of your own."

// demoZipkin is the demo's Zipkin server and the trace export to it.
type demoZipkin struct {
	url     string
	srv     *localzipkin.Server
	tracing *cli.Tracing
}

// startZipkin starts a throwaway Zipkin server in the background, unless
// the user exports traces elsewhere (OTEL_TRACES_EXPORTER) or Zipkin is not
// installed; wait returns it once it answers, or nil with the reason why
// tracing is off.
func startZipkin(ctx context.Context) (wait func() (*demoZipkin, string)) {
	if e := os.Getenv(cli.EnvTracesExporter); e != "" && e != "none" {
		return func() (*demoZipkin, string) {
			return nil, "traces go where " + cli.EnvTracesExporter + "=" + e + " says; no Zipkin of the demo's own"
		}
	}
	if _, err := localzipkin.FindJar(); err != nil {
		return func() (*demoZipkin, string) { return nil, "tracing is off: Zipkin is not installed. " + zipkinHowTo }
	}
	type result struct {
		srv *localzipkin.Server
		err error
	}
	res := make(chan result, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		srv, err := localzipkin.Start(sctx, localzipkin.Options{})
		res <- result{srv, err}
	}()
	return func() (*demoZipkin, string) {
		r := <-res
		if r.err != nil {
			return nil, "tracing is off: Zipkin did not start (" + firstLine(r.err) + "). " + zipkinHowTo
		}
		return &demoZipkin{url: r.srv.URL(), srv: r.srv}, ""
	}
}

// export sends this process's spans to Zipkin, as the global provider,
// and names Zipkin in the environment the shipping service inherits, so
// that a command's trace spans both services.
func (z *demoZipkin) export(ctx context.Context) error {
	env := map[string]string{
		cli.EnvTracesExporter: "zipkin",
		cli.EnvZipkinEndpoint: localzipkin.SpansURL(z.url),
		cli.EnvBSPScheduleDel: "200", // spans show in Zipkin within a moment
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	tr, err := cli.StartTracing(ctx, cli.TracingConfig{ServiceName: "orders", Logger: logger()})
	if err != nil {
		return err
	}
	z.tracing = tr
	otel.SetTracerProvider(tr.TracerProvider())
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return nil
}

// stop flushes the spans and stops the server.
func (z *demoZipkin) stop() {
	if z.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		z.tracing.Shutdown(ctx) //nolint:errcheck // it logs what it dropped
	}
	z.srv.Stop()
}

// clientSpan starts the span of a demo request, as a UI's tracing would,
// and puts its traceparent on req. It returns a no-op span when tracing
// is off.
func clientSpan(req *http.Request) (trace.Span, *http.Request) {
	ctx, span := otel.Tracer("github.com/stratadev/strata/examples/orders/cmd/orders").Start(req.Context(),
		"demo "+req.Method+" "+req.URL.Path, trace.WithSpanKind(trace.SpanKindClient))
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return span, req.WithContext(ctx)
}

// showTrace waits until Zipkin holds the trace of the request "METHOD
// path" with a span of every name in want (and of every service in
// services), then prints its link. Zipkin has no signal: its API is polled.
func (z *demoZipkin) showTrace(ctx context.Context, say func(string, ...any), traces map[string]string, request, what string, want, services []string) {
	id := traces[request]
	if id == "" {
		return
	}
	if err := z.tracing.ForceFlush(ctx); err != nil {
		say("  (could not flush the spans: %v)", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var missing []string
	for {
		spans, err := localzipkin.Trace(ctx, z.url, id)
		if err != nil && !errors.Is(err, localzipkin.ErrNoTrace) {
			say("  (Zipkin did not answer for trace %s: %v)", id, err)
			return
		}
		missing = missing[:0]
		for _, w := range want {
			if !slices.ContainsFunc(spans, func(s localzipkin.Span) bool { return s.Name == w }) {
				missing = append(missing, w)
			}
		}
		for _, s := range services {
			if !slices.ContainsFunc(spans, func(sp localzipkin.Span) bool { return sp.LocalEndpoint.ServiceName == s }) {
				missing = append(missing, "a span of service "+s)
			}
		}
		if len(missing) == 0 {
			say("%s (%d spans):\n  %s", what, len(spans), localzipkin.TraceURL(z.url, id))
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			say("%s: %s\n  (Zipkin has not shown %s yet)", what, localzipkin.TraceURL(z.url, id), strings.Join(missing, ", "))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// report prints the Zipkin links of the scenario's rename and, with the
// shipping service, of the confirm that crossed to it.
func (z *demoZipkin) report(ctx context.Context, say func(string, ...any), traces map[string]string, search, shipping bool) {
	say("\n== Traces (Zipkin at %s/zipkin/)", z.url)
	want := []string{"post /products/{id}/rename", "handle orders.renameproduct", "pgstore.append", "projections.apply order_view"}
	if search {
		want = append(want, "projections.apply order_search")
	}
	z.showTrace(ctx, say, traces, "POST /products/tea/rename", "The product rename: request, command, append, and every projection that applied it", want, nil)
	if shipping {
		z.showTrace(ctx, say, traces, "POST /orders/o-1001/confirm",
			"The confirm of o-1001, through Kafka into the shipping service", []string{"handle orders.confirmorder"}, []string{"orders", "shipping"})
	}
}

// recordTrace remembers the trace of a demo request under "METHOD path".
func recordTrace(traces map[string]string, req *http.Request, span trace.Span) {
	if traces != nil && span.SpanContext().IsValid() {
		traces[req.Method+" "+req.URL.Path] = span.SpanContext().TraceID().String()
	}
}
