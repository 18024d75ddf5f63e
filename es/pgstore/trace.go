package pgstore

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
)

// TracerName is the instrumentation name of the store's spans.
const TracerName = "github.com/stratadev/strata/es/pgstore"

// startAppend starts the span of one append, "pgstore.append", a client
// span (the database is the server) with the stream and the number of
// events.
func (s *Store) startAppend(ctx context.Context, stream string, events int) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return s.tracer.Start(ctx, "pgstore.append",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.namespace", s.cfg.Schema),
			attribute.String("db.operation.name", "append"),
			attribute.String("strata.stream", stream),
			attribute.Int("strata.events", events),
		))
}

// endAppend ends an append's span with its outcome.
func endAppend(span trace.Span, res es.AppendResult, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(
			attribute.Int64("strata.stream.version", res.Version),
			attribute.String("strata.position", res.Position.String()),
		)
	}
	span.End()
}
