package consume_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
)

// withTrace adds the W3C trace-context header of ctx's span to rec, as
// kafkasink does from the source event's metadata.
func withTrace(ctx context.Context, rec *kgo.Record) *kgo.Record {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: kafkasink.HeaderTraceParent, Value: []byte(c[kafkasink.HeaderTraceParent])})
	return rec
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// The handling of a message is a consumer span in the trace of the
// message's traceparent, and the command it dispatches is its child: the
// consuming service's work joins the producing command's trace.
func TestCommandsJoinTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	e := newCommandsEnv(t, 1)
	ctx, origin := tp.Tracer("test").Start(t.Context(), "order command")
	origin.End()
	in := inputs(1, 1, 1)[0]
	produce(t, producer(t, e.url), withTrace(ctx, in.record(e.topic)))

	cfg := e.config()
	cfg.TracerProvider = tp
	stop := running(t, e.commands(t, cfg, newBus(e.store, cqrs.Tracing(cqrs.TracingConfig{TracerProvider: tp})), mapAdd).Run)
	waitEvents(t, e.store, 1, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	processes := spansNamed(rec, "process "+e.topic)
	if len(processes) != 1 {
		t.Fatalf("%d process spans, want 1", len(processes))
	}
	p, want := processes[0], origin.SpanContext()
	if p.Parent().SpanID() != want.SpanID() || p.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("process span's parent %s in trace %s, want the producer's %s in trace %s",
			p.Parent().SpanID(), p.SpanContext().TraceID(), want.SpanID(), want.TraceID())
	}
	if p.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("process span kind %s, want consumer", p.SpanKind())
	}
	handles := spansNamed(rec, "handle consume_test.Add")
	if len(handles) != 1 {
		t.Fatalf("%d handle spans, want 1", len(handles))
	}
	if got := handles[0].Parent().SpanID(); got != p.SpanContext().SpanID() {
		t.Errorf("handle span's parent %s, want the process span %s", got, p.SpanContext().SpanID())
	}
}

// signalModel tells when it has handled a batch, and counts the messages.
type signalModel struct {
	counterModel
	done chan struct{}
	seen *atomic.Int64
}

func (m signalModel) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	err := m.counterModel.HandleBatch(ctx, tx, msgs)
	if err == nil {
		m.seen.Add(int64(len(msgs)))
	}
	select {
	case m.done <- struct{}{}:
	default:
	}
	return err
}

// A read model's batch span is linked to its messages' traces, and each
// sampled trace gets an apply span, its child.
func TestReadModelTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	e := newReadModelEnv(t, 1)
	ctx1, p1 := tp.Tracer("test").Start(t.Context(), "command 1")
	ctx2, p2 := tp.Tracer("test").Start(t.Context(), "command 2")
	p1.End()
	p2.End()
	ins := inputs(2, 1, 1)
	produce(t, producer(t, e.url), withTrace(ctx1, ins[0].record(e.topic)), withTrace(ctx2, ins[1].record(e.topic)))

	cfg := e.config()
	cfg.TracerProvider = tp
	m := signalModel{counterModel: e.model, done: make(chan struct{}, 1), seen: new(atomic.Int64)}
	stop := running(t, e.readModel(t, cfg, m).Run)
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for m.seen.Load() < 2 {
		select {
		case <-m.done:
		case <-timeout.C:
			t.Fatalf("the read model handled %d messages in 60s, want 2", m.seen.Load())
		}
	}
	// Once Run has returned, every span of the batches has ended.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	links, applies := 0, 0
	for _, b := range spansNamed(rec, "process "+e.topic) {
		links += len(b.Links())
	}
	if links != 2 {
		t.Errorf("the batch spans have %d links, want 2 (one per message's trace)", links)
	}
	parents := map[trace.SpanID]bool{}
	for _, a := range spansNamed(rec, "apply "+e.topic) {
		applies++
		parents[a.Parent().SpanID()] = true
	}
	if applies != 2 || !parents[p1.SpanContext().SpanID()] || !parents[p2.SpanContext().SpanID()] {
		t.Errorf("%d apply spans with parents %v, want one under each command (%s, %s)",
			applies, parents, p1.SpanContext().SpanID(), p2.SpanContext().SpanID())
	}
}
