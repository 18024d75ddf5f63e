package projections

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
)

// TracerName is the instrumentation name of the worker's spans.
const TracerName = "github.com/stratadev/strata/projections"

// maxLinks caps the links of a batch span: OpenTelemetry's default span
// limit.
const maxLinks = 128

// startBatch starts the span of one batch: the handler's ctx carries it.
// Events whose metadata carries a W3C trace context (es.MetaTraceParent, as
// the cqrs package writes it) are linked to it; when they all come from one
// trace context, the batch span also continues that trace as its child.
func (w *Worker[Tx]) startBatch(ctx context.Context, p ApplyParams) (context.Context, trace.Span) {
	var (
		links  []trace.Link
		seen   map[spanKey]bool
		parent trace.SpanContext
	)
	for i := range p.Events {
		md := p.Events[i].Record.Metadata
		if md[es.MetaTraceParent] == "" {
			continue
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(md)))
		k := spanKey{sc.TraceID(), sc.SpanID()}
		if !sc.IsValid() || seen[k] {
			continue
		}
		if seen == nil {
			seen = map[spanKey]bool{}
		}
		seen[k] = true
		parent = sc
		if len(links) < maxLinks {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if len(seen) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	return w.tracer.Start(ctx, "projections.batch "+w.name,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("strata.projection", w.name),
			attribute.Int("strata.events", len(p.Events)),
			attribute.String("strata.from", p.From.String()),
			attribute.String("strata.to", p.To.String()),
		))
}

type spanKey struct {
	trace trace.TraceID
	span  trace.SpanID
}

func endBatch(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
