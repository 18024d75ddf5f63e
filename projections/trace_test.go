package projections_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// spanOf records the span context its handler runs under.
type spanOf struct {
	stock
	got chan trace.SpanContext
}

func (p spanOf) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	p.got <- trace.SpanContextFromContext(ctx)
	return p.stock.HandleBatch(ctx, tx, events)
}

func TestWorkerTraceContinues(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	// A command's span, carried in the metadata of both its events.
	cmdCtx, cmdSpan := tp.Tracer("test").Start(context.Background(), "command")
	md := es.Metadata{}
	propagation.TraceContext{}.Inject(cmdCtx, propagation.MapCarrier(md))
	cmdSpan.End()
	store, sink := memstore.New(), memsink.New()
	data := es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":1}`), Metadata: md}
	res, err := store.Append(t.Context(), "a", es.NoStream, data, data)
	if err != nil {
		t.Fatal(err)
	}
	p := spanOf{stock: stock{name: "s"}, got: make(chan trace.SpanContext, 10)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](p), projections.Config{Logger: quiet, TracerProvider: tp}))
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	handlerSpan := <-p.got
	var batch sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "projections.batch s" {
			batch = s
		}
	}
	if batch == nil {
		t.Fatalf("no batch span among %d spans", len(rec.Ended()))
	}
	want := cmdSpan.SpanContext()
	if batch.SpanContext().SpanID() != handlerSpan.SpanID() {
		t.Errorf("the handler's ctx carries span %s, not the batch span %s", handlerSpan.SpanID(), batch.SpanContext().SpanID())
	}
	if batch.Parent().SpanID() != want.SpanID() || batch.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("batch span's parent %s in trace %s; want the command's span %s in trace %s",
			batch.Parent().SpanID(), batch.SpanContext().TraceID(), want.SpanID(), want.TraceID())
	}
	if l := batch.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != want.SpanID() {
		t.Errorf("batch span links %+v; want one link to the command's span", l)
	}
}

// A batch with events of two commands, one sampled and one not, links both
// and starts one apply span, in the sampled command's trace.
func TestWorkerApplySpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	sampledCtx, sampled := tp.Tracer("test").Start(context.Background(), "command")
	sampled.End()
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, Remote: true})
	mdOf := func(ctx context.Context) es.Metadata {
		md := es.Metadata{}
		propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(md))
		return md
	}
	store, sink := memstore.New(), memsink.New()
	a := es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":1}`), Metadata: mdOf(sampledCtx)}
	b := es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"b","qty":1}`),
		Metadata: mdOf(trace.ContextWithRemoteSpanContext(context.Background(), unsampled))}
	if _, err := store.Append(t.Context(), "a", es.NoStream, a, a); err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(t.Context(), "b", es.NoStream, b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](stock{name: "s"}),
		projections.Config{Logger: quiet, TracerProvider: tp}))
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	var batches, applies []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "projections.batch s":
			batches = append(batches, s)
		case "projections.apply s":
			applies = append(applies, s)
		}
	}
	if len(batches) != 1 {
		t.Fatalf("%d batch spans, want 1 (the test wants both commands' events in one batch)", len(batches))
	}
	if got := len(batches[0].Links()); got != 2 {
		t.Errorf("batch span has %d links, want 2 (one per command)", got)
	}
	if batches[0].Parent().IsValid() {
		t.Errorf("batch span of two commands has parent %s, want none", batches[0].Parent().SpanID())
	}
	if len(applies) != 1 {
		t.Fatalf("%d apply spans, want 1 (for the sampled command only)", len(applies))
	}
	ap, want := applies[0], sampled.SpanContext()
	if ap.Parent().SpanID() != want.SpanID() || ap.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("apply span's parent %s in trace %s, want the command's span %s in trace %s",
			ap.Parent().SpanID(), ap.SpanContext().TraceID(), want.SpanID(), want.TraceID())
	}
	if ap.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("apply span kind %s, want consumer", ap.SpanKind())
	}
	attrs := map[string]string{}
	for _, kv := range ap.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	for k, v := range map[string]string{"strata.projection": "s", "strata.event.type": "ItemAdded"} {
		if attrs[k] != v {
			t.Errorf("apply span attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
}
