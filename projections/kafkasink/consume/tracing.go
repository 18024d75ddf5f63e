package consume

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/projections/kafkasink"
)

// TracerName is the instrumentation name of the consumers' spans.
const TracerName = "github.com/stratadev/strata/projections/kafkasink/consume"

// maxLinks caps the links and apply spans of a batch: OpenTelemetry's
// default span limit.
const maxLinks = 128

// recordContext returns the span context in a record's W3C trace-context
// headers, which kafkasink copies from the source event's metadata: the
// span of the command that produced the event.
func recordContext(headers []kgo.RecordHeader) trace.SpanContext {
	var carrier propagation.MapCarrier
	for _, h := range headers {
		if h.Key == kafkasink.HeaderTraceParent || h.Key == kafkasink.HeaderTraceState {
			if carrier == nil {
				carrier = propagation.MapCarrier{}
			}
			carrier[h.Key] = string(h.Value)
		}
	}
	if carrier == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}

func (c *core) messageAttrs(topic string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", topic),
		attribute.String("messaging.consumer.group.name", c.cfg.Group),
	}
}

// startMessage starts the span of a command consumer's handling of one
// record, "process" and the topic, as a child of the record's trace
// context: the commands it dispatches carry it, so the consuming
// service's work joins the trace of the command that produced the event.
func (c *core) startMessage(ctx context.Context, rec *kgo.Record) (context.Context, trace.Span) {
	if sc := recordContext(rec.Headers); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	attrs := append(c.messageAttrs(rec.Topic),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(int(rec.Partition))),
		attribute.Int64("messaging.kafka.offset", rec.Offset))
	return c.tracer.Start(ctx, "process "+rec.Topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// startBatch starts the spans of a read model's batch, as the projection
// workers do: a batch span, "process" and the topic, linked to the trace
// context of every message (its child when they share one), which the
// handler's ctx carries; and for each sampled trace context a short
// "apply" span as its child, so that a backend without links (Zipkin)
// shows the consuming read model in the producing command's trace.
func (c *core) startBatch(ctx context.Context, topic string, msgs []Message) (context.Context, trace.Span, []trace.Span) {
	var (
		links   []trace.Link
		applies []trace.Span
		seen    map[trace.SpanID]bool
		parent  trace.SpanContext
	)
	for _, m := range msgs {
		sc := recordContext(m.Headers)
		if !sc.IsValid() || seen[sc.SpanID()] {
			continue
		}
		if seen == nil {
			seen = map[trace.SpanID]bool{}
		}
		seen[sc.SpanID()] = true
		parent = sc
		if len(links) < maxLinks {
			links = append(links, trace.Link{SpanContext: sc})
		}
		if sc.IsSampled() && len(applies) < maxLinks {
			_, s := c.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc), "apply "+topic,
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(c.messageAttrs(topic)...))
			applies = append(applies, s)
		}
	}
	if len(seen) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	attrs := append(c.messageAttrs(topic), attribute.Int("messaging.batch.message_count", len(msgs)))
	ctx, batch := c.tracer.Start(ctx, "process "+topic, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	return ctx, batch, applies
}

// endSpans ends span and others with err as their status.
func endSpans(span trace.Span, others []trace.Span, err error) {
	for _, s := range append(others, span) {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}
