package cqrs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

// callerSpan returns a context carrying a sampled span context, as an
// instrumented HTTP server would.
func callerSpan(t *testing.T, ctx context.Context) (context.Context, trace.SpanContext) {
	t.Helper()
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
	})
	return trace.ContextWithSpanContext(ctx, sc), sc
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		ctx, _ := callerSpan(t, t.Context())
		ctx = cqrs.WithMetadata(ctx, es.Metadata{"user": "u1", es.MetaCorrelationID: "forged", es.MetaTraceParent: "forged", cqrs.MetaCommandHash: "forged"})
		ctx = cqrs.WithMetadata(ctx, es.Metadata{"tenant": "t1"})
		ctx = cqrs.WithCorrelationID(ctx, "corr-1")
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		if _, err := a.bus.Dispatch(ctx, &ConfirmOrder{ID: "cmd-1", OrderID: "1"}); err != nil {
			t.Fatal(err)
		}
		recs := read(t, store, "order-1")
		want := es.Metadata{
			"user":               "u1",
			"tenant":             "t1",
			es.MetaCorrelationID: "corr-1",
			es.MetaCausationID:   "cmd-1",
			es.MetaCommandType:   "cqrs_test.ConfirmOrder",
			es.MetaTraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			es.MetaTraceState:    "vendor=x",
			// The hex SHA-256 of the command's JSON encoding.
			cqrs.MetaCommandHash: sha256Hex(`{"ID":"cmd-1","OrderID":"1"}`),
		}
		for _, r := range recs[1:] {
			if !equalMetadata(r.Metadata, want) {
				t.Fatalf("event %d metadata:\n got %v\nwant %v", r.Version, r.Metadata, want)
			}
		}
	})
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func equalMetadata(a, b es.Metadata) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestMetadataDefaults: a command without an ID gets a new causation ID per
// dispatch, which also starts the correlation; no span, no trace context.
func TestMetadataDefaults(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	a.mustDispatch(t, &ConfirmOrder{OrderID: "1"})
	recs := read(t, store, "order-1")
	seen := map[string]bool{}
	for _, r := range recs {
		c := r.Metadata[es.MetaCausationID]
		id, err := uuid.Parse(c)
		if err != nil || id.Version() != 7 {
			t.Fatalf("causation ID %q is not a version 7 UUID", c)
		}
		if r.Metadata[es.MetaCorrelationID] != c {
			t.Fatalf("correlation %q; want the causation %q", r.Metadata[es.MetaCorrelationID], c)
		}
		if _, ok := r.Metadata[es.MetaTraceParent]; ok {
			t.Fatalf("traceparent without a span: %v", r.Metadata)
		}
		seen[c] = true
	}
	// Three events, two dispatches: the confirmation's two events share one.
	if len(seen) != 2 || recs[1].Metadata[es.MetaCausationID] != recs[2].Metadata[es.MetaCausationID] {
		t.Fatalf("causation IDs: %v", seen)
	}
}

// TestNestedDispatch: a command dispatched while handling another shares its
// correlation and has its own causation.
func TestNestedDispatch(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{})
	type placeAndConfirm struct{ OrderID string }
	cqrs.Handle(a.bus, func(ctx context.Context, c placeAndConfirm) (cqrs.Result, error) {
		if _, err := a.bus.Dispatch(ctx, PlaceOrder{ID: "inner-1", OrderID: c.OrderID, Customer: "ann"}); err != nil {
			return cqrs.Result{}, err
		}
		return a.bus.Dispatch(ctx, &ConfirmOrder{ID: "inner-2", OrderID: c.OrderID})
	})
	ctx := cqrs.WithCorrelationID(t.Context(), "outer")
	a.mustDispatchCtx(t, ctx, placeAndConfirm{OrderID: "1"})
	for i, r := range read(t, store, "order-1") {
		wantCause := []string{"inner-1", "inner-2", "inner-2"}[i]
		if r.Metadata[es.MetaCorrelationID] != "outer" || r.Metadata[es.MetaCausationID] != wantCause {
			t.Fatalf("event %d: %v", i, r.Metadata)
		}
	}
}

func (a *app) mustDispatchCtx(t *testing.T, ctx context.Context, cmd any) cqrs.Result {
	t.Helper()
	res, err := a.bus.Dispatch(ctx, cmd)
	if err != nil {
		t.Fatalf("dispatch %T: %v", cmd, err)
	}
	return res
}

// TestContextFromMetadata: what a projection does with a record's metadata
// continues the trace and the correlation.
func TestContextFromMetadata(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		ctx, sc := callerSpan(t, t.Context())
		a.mustDispatchCtx(t, cqrs.WithCorrelationID(ctx, "corr-9"), PlaceOrder{OrderID: "1", Customer: "ann"})
		rec := read(t, store, "order-1")[0]

		pctx := cqrs.ContextFromMetadata(context.Background(), rec.Metadata)
		got := trace.SpanContextFromContext(pctx)
		if !got.IsRemote() || got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.TraceState().String() != "vendor=x" {
			t.Fatalf("span context %+v; want the caller's, remote", got)
		}
		if id := cqrs.CorrelationID(pctx); id != "corr-9" {
			t.Fatalf("correlation %q", id)
		}
		// A command a process manager dispatches from there joins both.
		a.mustDispatchCtx(t, pctx, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
		md := read(t, store, "order-1")[1].Metadata
		if md[es.MetaCorrelationID] != "corr-9" || md[es.MetaTraceParent] != rec.Metadata[es.MetaTraceParent] {
			t.Fatalf("follow-up metadata: %v", md)
		}

		// Metadata without trace context or correlation changes nothing.
		plain := cqrs.ContextFromMetadata(context.Background(), es.Metadata{"user": "u"})
		if trace.SpanContextFromContext(plain).IsValid() || cqrs.CorrelationID(plain) != "" {
			t.Fatal("empty metadata made a span context or a correlation")
		}
	})
}

func TestEventMetadataOutsideDispatch(t *testing.T) {
	t.Parallel()
	ctx := cqrs.WithMetadata(context.Background(), es.Metadata{"user": "u"})
	ctx = cqrs.WithCorrelationID(ctx, "c")
	md := cqrs.EventMetadata(ctx)
	if !equalMetadata(md, es.Metadata{"user": "u", es.MetaCorrelationID: "c"}) {
		t.Fatalf("metadata: %v", md)
	}
	if cqrs.WithCorrelationID(ctx, "") != ctx {
		t.Fatal("an empty correlation ID changed the context")
	}
}
