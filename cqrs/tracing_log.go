package cqrs

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// TraceLogHandler wraps h so that a record logged with a context that
// carries a valid OpenTelemetry span (InfoContext and friends, as strata's
// packages log) gets the attributes trace_id and span_id, in W3C's hex
// form: a log line then leads to its trace, and a trace to its log lines.
// Records logged without such a context pass through unchanged. The
// attributes go where the record's own attributes go, so under a group
// that a logger's WithGroup opened. The strata binaries (cmd/strata/cli)
// log through it:
//
//	log := slog.New(cqrs.TraceLogHandler(slog.NewJSONHandler(os.Stderr, nil)))
//	bus.Use(cqrs.Tracing(cqrs.TracingConfig{}), cqrs.Logging(log))
func TraceLogHandler(h slog.Handler) slog.Handler {
	if t, ok := h.(traceLogHandler); ok {
		return t
	}
	return traceLogHandler{h}
}

type traceLogHandler struct{ next slog.Handler }

func (h traceLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{h.next.WithAttrs(attrs)}
}

func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{h.next.WithGroup(name)}
}
