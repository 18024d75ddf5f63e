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

// batchSpans are the spans of one batch: the batch span, and the apply
// spans in the traces of its events.
type batchSpans struct {
	batch trace.Span
	apply []trace.Span
}

// startBatch starts the spans of one batch: the handler's ctx carries the
// batch span. Events whose metadata carries a W3C trace context
// (es.MetaTraceParent, as the cqrs package writes it) are linked to it, as
// OpenTelemetry's messaging conventions have it; when they all come from
// one trace context, the batch span also continues that trace as its
// child. Because a backend without links (Zipkin) would not show a batch
// in the trace of a command whose events it holds, each sampled trace
// context of the batch also gets a short child span, "projections.apply"
// and the projection's name, that lasts as long as the batch span: the
// command's trace then shows every projection that applied its events
// (also when the batch span is a child of that command too: the apply span
// is there whatever else the batch holds, so the shape of a trace does not
// depend on how events were batched).
// Both kinds are capped at 128 per batch, OpenTelemetry's default link
// limit.
func (w *Worker[Tx]) startBatch(ctx context.Context, p ApplyParams) (context.Context, batchSpans) {
	var (
		links  []trace.Link
		seen   map[spanKey]bool
		parent trace.SpanContext
		spans  batchSpans
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
		if sc.IsSampled() && len(spans.apply) < maxLinks {
			spans.apply = append(spans.apply, w.startApply(sc, p.Events[i].Record.Type))
		}
	}
	if len(seen) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, spans.batch = w.tracer.Start(ctx, "projections.batch "+w.name,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("strata.projection", w.name),
			attribute.Int("strata.events", len(p.Events)),
			attribute.String("strata.from", p.From.String()),
			attribute.String("strata.to", p.To.String()),
		))
	return ctx, spans
}

// startApply starts the apply span of the events of one trace context sc
// (the first of them of type eventType) as a child of sc.
func (w *Worker[Tx]) startApply(sc trace.SpanContext, eventType string) trace.Span {
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	_, span := w.tracer.Start(ctx, "projections.apply "+w.name,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("strata.projection", w.name),
			attribute.String("strata.event.type", eventType),
		))
	return span
}

type spanKey struct {
	trace trace.TraceID
	span  trace.SpanID
}

// endBatch ends the spans of a batch, with err as their status.
func endBatch(spans batchSpans, err error) {
	for _, s := range append(spans.apply, spans.batch) {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}
