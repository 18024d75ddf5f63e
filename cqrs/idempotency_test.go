package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

func TestEventIDs(t *testing.T) {
	t.Parallel()
	a, b := cqrs.EventID("orders.AddItem", "k1", 0), cqrs.EventID("orders.AddItem", "k1", 0)
	if a != b || a.Version() != 5 {
		t.Fatalf("EventID is not a stable version 5 UUID: %v %v", a, b)
	}
	distinct := map[string]bool{}
	for _, id := range []string{
		cqrs.EventID("orders.AddItem", "k1", 0).String(),
		cqrs.EventID("orders.AddItem", "k1", 1).String(),
		cqrs.EventID("orders.AddItem", "k2", 0).String(),
		cqrs.EventID("orders.PlaceOrder", "k1", 0).String(),
		cqrs.EventID("orders.AddItem\x00k", "1", 0).String(),
	} {
		distinct[id] = true
	}
	if len(distinct) != 5 {
		t.Fatalf("EventID collides: %v", distinct)
	}
}

func TestIdempotentEventIDs(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{ID: "p", OrderID: "1", Customer: "ann"})
	a.mustDispatch(t, &ConfirmOrder{ID: "c", OrderID: "1"})
	recs := read(t, store, "order-1")
	want := []string{
		cqrs.EventID("cqrs_test.PlaceOrder", "p", 0).String(),
		cqrs.EventID("cqrs_test.ConfirmOrder", "c", 0).String(),
		cqrs.EventID("cqrs_test.ConfirmOrder", "c", 1).String(),
	}
	for i, r := range recs {
		if r.ID.String() != want[i] {
			t.Fatalf("event %d has ID %s; want %s", i, r.ID, want[i])
		}
	}
}

// TestRetryOnNew: a retried create lands where the original did, and the
// store returns the original result, even after later events.
func TestRetryOnNew(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		cmd := PlaceOrder{ID: "req-1", OrderID: "1", Customer: "ann"}
		first := a.mustDispatch(t, cmd)
		if again := a.mustDispatch(t, cmd); again != first {
			t.Fatalf("retry: %+v; want the original %+v", again, first)
		}
		a.mustDispatch(t, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
		if again := a.mustDispatch(t, cmd); again != first {
			t.Fatalf("retry after another event: %+v; want the original %+v", again, first)
		}
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,ItemAdded" {
			t.Fatalf("stream: %s", got)
		}
		// Without an ID, or with another one, the second create is refused,
		// after one look at the stream's first event.
		if _, err := a.bus.Dispatch(t.Context(), PlaceOrder{OrderID: "1", Customer: "ann"}); !errors.Is(err, cqrs.ErrAggregateExists) {
			t.Fatalf("create without an ID: %v", err)
		}
		counted := &countingStore{Store: store}
		b := newApp(counted, cqrs.AggregateConfig{})
		if _, err := b.bus.Dispatch(t.Context(), PlaceOrder{ID: "req-other", OrderID: "1", Customer: "ann"}); !errors.Is(err, cqrs.ErrAggregateExists) {
			t.Fatalf("create with another ID: %v", err)
		}
		if n := counted.reads.Load(); n != 1 {
			t.Fatalf("refusing a create read the stream %d times; want 1", n)
		}
	})
}

// TestRetryDecideFails: the retried command now fails in decide (the order
// is confirmed already); the handler finds the original events.
func TestRetryDecideFails(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		cmd := &ConfirmOrder{ID: "req-2", OrderID: "1"}
		first := a.mustDispatch(t, cmd)
		a.mustDispatch(t, SetNote{OrderID: "1", Note: "later"})
		if again := a.mustDispatch(t, cmd); again != first {
			t.Fatalf("retry: %+v; want the original %+v (a run of two events)", again, first)
		}
		if first.Version != 3 {
			t.Fatalf("confirm: %+v", first)
		}
		// Another confirmation, with another ID, gets the domain error.
		counted := &countingStore{Store: store}
		b := newApp(counted, cqrs.AggregateConfig{})
		if _, err := b.bus.Dispatch(t.Context(), &ConfirmOrder{ID: "req-3", OrderID: "1"}); !errors.Is(err, ErrOrderConfirmed) {
			t.Fatalf("second confirmation: %v", err)
		}
		// One read to load, one to look for an earlier dispatch.
		if n := counted.reads.Load(); n != 2 {
			t.Fatalf("refusing a command with an ID read the stream %d times; want 2", n)
		}
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,OrderConfirmed,NoteSet,NoteSet" {
			t.Fatalf("stream: %s", got)
		}
	})
}

// TestRetryDecideSucceeds: the retried command decides the same events
// again, at a later version; the store refuses the duplicate IDs and the
// handler returns the original result.
func TestRetryDecideSucceeds(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		cmd := AddItem{ID: "req-4", OrderID: "1", SKU: "tea", Quantity: 1}
		first := a.mustDispatch(t, cmd)
		a.mustDispatch(t, AddItem{OrderID: "1", SKU: "cake", Quantity: 1})
		again := a.mustDispatch(t, cmd)
		if again != first {
			t.Fatalf("retry: %+v; want the original %+v", again, first)
		}
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,ItemAdded,ItemAdded" {
			t.Fatalf("stream: %s", got)
		}
	})
}

// TestConcurrentRetry dispatches the same command twice at once: exactly one
// append lands and both callers get its result.
func TestConcurrentRetry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		for round := range 10 {
			order := fmt.Sprint(round)
			a.mustDispatch(t, PlaceOrder{OrderID: order, Customer: "ann"})
			cmd := AddItem{ID: "twice-" + order, OrderID: order, SKU: "tea", Quantity: 1}
			var (
				res  [2]cqrs.Result
				errs [2]error
			)
			together(2, func(i int) { res[i], errs[i] = a.bus.Dispatch(context.Background(), cmd) })
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("round %d: %v, %v", round, errs[0], errs[1])
			}
			if res[0] != res[1] || res[0].Version != 2 {
				t.Fatalf("round %d: results %+v and %+v; want the same, at version 2", round, res[0], res[1])
			}
			if got := strings.Join(types(read(t, store, "order-"+order)), ","); got != "OrderPlaced,ItemAdded" {
				t.Fatalf("round %d: stream: %s", round, got)
			}
		}
	})
}

// TestCommandIDReused: the same command ID on another aggregate is not a
// retry; the store refuses the duplicate event IDs and nothing is written.
func TestCommandIDReused(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		a.mustDispatch(t, PlaceOrder{OrderID: "2", Customer: "bob"})
		a.mustDispatch(t, AddItem{ID: "same", OrderID: "1", SKU: "tea", Quantity: 1})
		_, err := a.bus.Dispatch(t.Context(), AddItem{ID: "same", OrderID: "2", SKU: "tea", Quantity: 1})
		var dup *es.DuplicateEventIDError
		if !errors.Is(err, es.ErrDuplicateEventID) || !errors.As(err, &dup) {
			t.Fatalf("command ID reused on another aggregate: %v", err)
		}
		if n := len(read(t, store, "order-2")); n != 1 {
			t.Fatalf("order-2 has %d events; want 1", n)
		}
	})
}

// TestIdempotencyWindow: a retry that the aggregate now refuses is
// answered with the original result only within the window; beyond it, it
// gets the refusal. Either way nothing is appended twice. A retry that the
// store refuses for its stored event IDs is found beyond the window.
func TestIdempotencyWindow(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{IdempotencyWindow: 2})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		add := AddItem{ID: "old-add", OrderID: "1", SKU: "tea", Quantity: 1}
		firstAdd := a.mustDispatch(t, add)
		a.mustDispatch(t, AddItem{OrderID: "1", SKU: "x", Quantity: 1})
		a.mustDispatch(t, AddItem{OrderID: "1", SKU: "y", Quantity: 1})
		// AddItem is accepted again; the store refuses its event ID.
		if again := a.mustDispatch(t, add); again != firstAdd {
			t.Fatalf("accepted retry beyond the window: %+v; want %+v", again, firstAdd)
		}
		confirm := &ConfirmOrder{ID: "old-confirm", OrderID: "1"}
		firstConfirm := a.mustDispatch(t, confirm)
		if again := a.mustDispatch(t, confirm); again != firstConfirm {
			t.Fatalf("refused retry within the window: %+v; want %+v", again, firstConfirm)
		}
		a.mustDispatch(t, SetNote{OrderID: "1", Note: "x"})
		if _, err := a.bus.Dispatch(t.Context(), confirm); !errors.Is(err, ErrOrderConfirmed) {
			t.Fatalf("refused retry beyond the window: %v; want ErrOrderConfirmed", err)
		}
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,ItemAdded,ItemAdded,ItemAdded,OrderConfirmed,NoteSet,NoteSet" {
			t.Fatalf("stream: %s", got)
		}
	})
}

// TestRetrySearchPages: the original events are found across pages of the
// backwards search.
func TestRetrySearchPages(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{IdempotencyWindow: 1000})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	cmd := &ConfirmOrder{ID: "deep", OrderID: "1"}
	first := a.mustDispatch(t, cmd)
	for i := range 250 {
		a.mustDispatch(t, SetNote{OrderID: "1", Note: fmt.Sprint(i)})
	}
	if again := a.mustDispatch(t, cmd); again != first {
		t.Fatalf("retry 250 events later: %+v; want %+v", again, first)
	}
}

func TestNoIDNoIdempotency(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	a := newApp(store, cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	cmd := AddItem{OrderID: "1", SKU: "tea", Quantity: 1}
	first := a.mustDispatch(t, cmd)
	if second := a.mustDispatch(t, cmd); first == second {
		t.Fatal("a command without an ID was deduplicated")
	}
}
