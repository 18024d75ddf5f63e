package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// Every append, grouped or alone, is a client span under the caller's
// span, with the stream, the event count and the outcome.
func TestAppendSpan(t *testing.T) {
	t.Parallel()
	for _, group := range []int{1, pgstore.GroupCommitMaxDefault} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		defer tp.Shutdown(context.Background())
		store, _ := newStore(t, pgstore.Config{TracerProvider: tp, GroupCommitMax: group})

		ctx, parent := tp.Tracer("test").Start(t.Context(), "handle")
		ev := es.EventData{Type: "Noted", Data: []byte(`{}`)}
		res, err := store.Append(ctx, "s-1", es.NoStream, ev, ev)
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.Append(ctx, "s-1", es.NoStream, ev)
		if !errors.Is(err, es.ErrWrongExpectedVersion) {
			t.Fatalf("group %d: second append at NoStream: %v, want a conflict", group, err)
		}
		parent.End()

		var spans []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "pgstore.append" {
				spans = append(spans, s)
			}
		}
		if len(spans) != 2 {
			t.Fatalf("group %d: %d pgstore.append spans, want 2", group, len(spans))
		}
		ok, conflict := spans[0], spans[1]
		for _, s := range spans {
			if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
				t.Errorf("group %d: append span parent %s kind %s, want %s client", group, s.Parent().SpanID(), s.SpanKind(), parent.SpanContext().SpanID())
			}
		}
		got := map[string]string{}
		for _, kv := range ok.Attributes() {
			got[string(kv.Key)] = kv.Value.String()
		}
		want := map[string]string{"db.system.name": "postgresql", "strata.stream": "s-1", "strata.events": "2",
			"strata.stream.version": "2", "strata.position": res.Position.String()}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("group %d: append span attribute %s = %q, want %q", group, k, got[k], v)
			}
		}
		if ok.Status().Code != codes.Unset {
			t.Errorf("group %d: successful append span status %v, want unset", group, ok.Status())
		}
		if conflict.Status().Code != codes.Error {
			t.Errorf("group %d: conflicting append span status %v, want error", group, conflict.Status())
		}
	}
}
