package cqrs

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ConflictRetryEvent is the name of the span event that a command handled
// with [OnExisting] or [OnAny] adds to the span in its context (the
// "handle" span of [Tracing]) each time a version conflict makes it load
// and decide again.
const ConflictRetryEvent = "strata.conflict_retry"

// traceConflictRetry records a conflict retry on the span in ctx, if any.
func traceConflictRetry(ctx context.Context, stream string, attempt int, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent(ConflictRetryEvent, trace.WithAttributes(
		attribute.String("strata.stream", stream),
		attribute.Int("strata.attempt", attempt),
		attribute.String("exception.message", err.Error()),
	))
}
