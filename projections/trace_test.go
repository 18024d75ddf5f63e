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
