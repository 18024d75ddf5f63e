package cqrs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

func TestLogging(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	a := newApp(backends[0].open(t), cqrs.AggregateConfig{})
	a.bus.Use(cqrs.Logging(logger))
	cqrs.Handle(a.bus, func(context.Context, pong) (cqrs.Result, error) { panic("pong") })

	a.mustDispatchCtx(t, cqrs.WithCorrelationID(t.Context(), "c1"), PlaceOrder{ID: "k1", OrderID: "1", Customer: "ann"})
	a.bus.Dispatch(t.Context(), AddItem{OrderID: "1"})
	a.bus.Dispatch(t.Context(), pong{})

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d log lines; want 3:\n%s", len(lines), buf.String())
	}
	ok, invalid, panicked := lines[0], lines[1], lines[2]
	if ok["level"] != "INFO" || ok["msg"] != "command handled" || ok["command"] != "cqrs_test.PlaceOrder" ||
		ok["command_id"] != "k1" || ok["correlation_id"] != "c1" || ok["stream"] != "order-1" ||
		ok["version"] != 1.0 || ok["position"] == "" || ok["duration"] == nil {
		t.Errorf("success: %v", ok)
	}
	if invalid["level"] != "WARN" || invalid["msg"] != "command failed" || !strings.Contains(invalid["error"].(string), "invalid command") {
		t.Errorf("failure: %v", invalid)
	}
	if _, has := invalid["command_id"]; has {
		t.Errorf("failure: command_id logged for a command without an ID: %v", invalid)
	}
	if panicked["level"] != "ERROR" || panicked["msg"] != "command panicked" || !strings.Contains(panicked["stack"].(string), "goroutine") {
		t.Errorf("panic: %v", panicked)
	}
}

func TestTracing(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{})
	a.bus.Use(cqrs.Tracing(cqrs.TracingConfig{TracerProvider: tp}))

	ctx, parent := tp.Tracer("test").Start(t.Context(), "POST /orders")
	a.mustDispatchCtx(t, ctx, PlaceOrder{ID: "k1", OrderID: "1", Customer: "ann"})
	a.bus.Dispatch(ctx, AddItem{OrderID: "nope", SKU: "x", Quantity: 1})
	parent.End()

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans; want 3", len(spans))
	}
	placed, failed := spans[0], spans[1]
	if placed.Name() != "handle cqrs_test.PlaceOrder" || placed.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("span %q with parent %v", placed.Name(), placed.Parent().SpanID())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range placed.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["strata.command.type"].AsString() != "cqrs_test.PlaceOrder" || attrs["strata.command.id"].AsString() != "k1" ||
		attrs["strata.correlation_id"].AsString() != "k1" || attrs["strata.stream"].AsString() != "order-1" ||
		attrs["strata.stream.version"].AsInt64() != 1 || attrs["strata.position"].AsString() == "" {
		t.Fatalf("attributes: %v", placed.Attributes())
	}
	// The events record the command's span, so projections continue it.
	md := read(t, store, "order-1")[0].Metadata
	sc := placed.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; md[es.MetaTraceParent] != want {
		t.Fatalf("traceparent %q; want %q", md[es.MetaTraceParent], want)
	}
	if failed.Status().Code != codes.Error || !strings.Contains(failed.Status().Description, "not found") || len(failed.Events()) == 0 {
		t.Fatalf("failed span: status %+v, events %v", failed.Status(), failed.Events())
	}
}
