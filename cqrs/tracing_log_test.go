package cqrs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/stratadev/strata/cqrs"
)

// Records logged inside a span carry its trace and span IDs; others do
// not; attributes and groups of the logger still work.
func TestTraceLogHandler(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	var buf bytes.Buffer
	log := slog.New(cqrs.TraceLogHandler(slog.NewJSONHandler(&buf, nil))).With("app", "test")

	ctx, span := tp.Tracer("test").Start(context.Background(), "work")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	log.Info("no context")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %s", len(lines), buf.String())
	}
	want := []map[string]string{
		{"msg": "inside", "app": "test", "trace_id": span.SpanContext().TraceID().String(), "span_id": span.SpanContext().SpanID().String()},
		{"msg": "outside", "app": "test", "trace_id": "", "span_id": ""},
		{"msg": "no context", "app": "test", "trace_id": "", "span_id": ""},
	}
	for i, l := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range want[i] {
			g, _ := got[k].(string)
			if g != v {
				t.Errorf("line %d: %s = %q, want %q", i+1, k, g, v)
			}
		}
	}
}
