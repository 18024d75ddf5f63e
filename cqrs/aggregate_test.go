package cqrs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

func TestAggregateLifecycle(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		placed := a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		if placed.Stream != "order-1" || placed.Version != 1 || placed.Position.IsZero() {
			t.Fatalf("place: %+v", placed)
		}
		added := a.mustDispatch(t, AddItem{OrderID: "1", SKU: "tea", Quantity: 2})
		if added.Stream != "order-1" || added.Version != 2 || !placed.Position.Before(added.Position) {
			t.Fatalf("add after %+v: %+v", placed, added)
		}
		confirmed := a.mustDispatch(t, &ConfirmOrder{OrderID: "1"}) // a pointer works too
		if confirmed.Version != 4 {
			t.Fatalf("confirm (two events): %+v", confirmed)
		}

		recs := read(t, store, "order-1")
		if got := strings.Join(types(recs), ","); got != "OrderPlaced,ItemAdded,OrderConfirmed,NoteSet" {
			t.Fatalf("stream: %s", got)
		}
		// Result.Position is the position of the command's last event.
		if recs[1].Position != added.Position || recs[3].Position != confirmed.Position {
			t.Fatalf("positions: records %v %v, results %v %v", recs[1].Position, recs[3].Position, added.Position, confirmed.Position)
		}
	})
}

func TestOnNewDoesNotLoad(t *testing.T) {
	t.Parallel()
	store := &countingStore{Store: backends[0].open(t)}
	a := newApp(store, cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	if r, w := store.reads.Load(), store.appends.Load(); r != 0 || w != 1 {
		t.Fatalf("OnNew: %d reads, %d appends; want 0 and 1", r, w)
	}
}

func TestOnNewExisting(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		_, err := a.bus.Dispatch(t.Context(), PlaceOrder{OrderID: "1", Customer: "bob"})
		var exists *cqrs.AggregateExistsError
		if !errors.As(err, &exists) || exists.Stream != "order-1" || exists.Command != "cqrs_test.PlaceOrder" {
			t.Fatalf("place twice: %v", err)
		}
		var conflict *es.VersionConflictError
		if !errors.Is(err, cqrs.ErrAggregateExists) || !errors.Is(err, es.ErrWrongExpectedVersion) || !errors.As(err, &conflict) {
			t.Fatalf("place twice: %v does not unwrap to the sentinels and the store's conflict", err)
		}
		if n := len(read(t, store, "order-1")); n != 1 {
			t.Fatalf("stream has %d events; want 1", n)
		}
	})
}

func TestOnExistingNotFound(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		_, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "nope", SKU: "tea", Quantity: 1})
		var nf *cqrs.AggregateNotFoundError
		if !errors.Is(err, cqrs.ErrAggregateNotFound) || !errors.As(err, &nf) || nf.Stream != "order-nope" {
			t.Fatalf("add to missing order: %v", err)
		}
		if recs := read(t, store, "order-nope"); len(recs) != 0 {
			t.Fatalf("a missing aggregate got events: %v", types(recs))
		}
	})
}

func TestOnAnyAndNoOp(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		first := a.mustDispatch(t, SetNote{OrderID: "1", Note: "hi"}) // creates
		if first.Version != 1 {
			t.Fatalf("set note on a new order: %+v", first)
		}
		second := a.mustDispatch(t, SetNote{OrderID: "1", Note: "ho"}) // changes
		if second.Version != 2 {
			t.Fatalf("change note: %+v", second)
		}
		// Deciding no events appends nothing and returns the current version
		// with a zero position.
		same := a.mustDispatch(t, SetNote{OrderID: "1", Note: "ho"})
		if same != (cqrs.Result{Stream: "order-1", Version: 2}) {
			t.Fatalf("no-op: %+v", same)
		}
		// A no-op on an aggregate that does not exist leaves it so.
		none := a.mustDispatch(t, SetNote{OrderID: "2"})
		if none != (cqrs.Result{Stream: "order-2"}) {
			t.Fatalf("no-op on a new aggregate: %+v", none)
		}
		if n := len(read(t, store, "order-1")); n != 2 {
			t.Fatalf("stream has %d events; want 2", n)
		}
	})
}

func TestDecideErrorReachesCaller(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
		a.mustDispatch(t, &ConfirmOrder{OrderID: "1"})
		_, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
		if !errors.Is(err, ErrOrderConfirmed) {
			t.Fatalf("add to a confirmed order: %v", err)
		}
		if want := "cqrs: handle cqrs_test.AddItem for order-1: order is confirmed"; err.Error() != want {
			t.Fatalf("error:\n got %q\nwant %q", err, want)
		}
		if n := len(read(t, store, "order-1")); n != 3 {
			t.Fatalf("stream has %d events; want 3", n)
		}
	})
}

func TestEmptyAggregateID(t *testing.T) {
	t.Parallel()
	repo := es.NewRepository(backends[0].open(t), newRegistry(), newOrder, es.RepositoryConfig{})
	bus := cqrs.NewBus()
	// No Validate method on this command: the handler catches the empty ID.
	cqrs.Handle(bus, cqrs.Aggregate(repo, setNote, cqrs.AggregateConfig{}))
	_, err := bus.Dispatch(t.Context(), SetNote{Note: "x"})
	var ve *cqrs.ValidationError
	if !errors.Is(err, cqrs.ErrInvalidCommand) || !errors.As(err, &ve) {
		t.Fatalf("empty aggregate id: %v", err)
	}
}

func TestUnregisteredEvent(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	repo := es.NewRepository(store, es.NewRegistry(), newOrder, es.RepositoryConfig{})
	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(repo, placeOrder, cqrs.AggregateConfig{}))
	_, err := bus.Dispatch(t.Context(), PlaceOrder{OrderID: "1", Customer: "ann"})
	if !errors.Is(err, es.ErrUnknownEventType) || !strings.Contains(err.Error(), "cqrs_test.PlaceOrder") {
		t.Fatalf("event type not registered: %v", err)
	}
	if recs := read(t, store, "1"); len(recs) != 0 {
		t.Fatalf("stream got events: %v", types(recs))
	}
}

func TestConflictRetry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		wrapped := &interferingStore{Store: store}
		a := newApp(wrapped, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})

		// Two other writers get in first; the third attempt lands.
		wrapped.interfered.Store(0)
		wrapped.n.Store(2)
		res := a.mustDispatch(t, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
		if res.Version != 4 {
			t.Fatalf("after two conflicts: %+v", res)
		}
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,Unrelated,Unrelated,ItemAdded" {
			t.Fatalf("stream: %s", got)
		}
	})
}

func TestConflictAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		wrapped := &interferingStore{Store: store}
		a := newApp(wrapped, cqrs.AggregateConfig{MaxAttempts: 2})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})

		wrapped.interfered.Store(0)
		wrapped.n.Store(1 << 30)
		_, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
		var ce *cqrs.ConflictError
		if !errors.As(err, &ce) || ce.Attempts != 2 || ce.Stream != "order-1" || ce.Command != "cqrs_test.AddItem" {
			t.Fatalf("always conflicting: %v", err)
		}
		var vc *es.VersionConflictError
		if !errors.Is(err, es.ErrWrongExpectedVersion) || !errors.As(err, &vc) || vc.Stream != "order-1" {
			t.Fatalf("%v does not unwrap to the store's conflict", err)
		}
		// Nothing of the command was written: only the interfering events.
		if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,Unrelated,Unrelated" {
			t.Fatalf("stream: %s", got)
		}
	})
}

// TestConcurrentWriters runs real concurrent dispatches on one aggregate:
// each succeeds within the retry budget or fails with a *ConflictError, and
// the stream holds exactly the events of the successful ones, with no gaps.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{MaxAttempts: 4})
		a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})

		const writers = 8
		results, errs := make([]cqrs.Result, writers), make([]error, writers)
		together(writers, func(i int) {
			results[i], errs[i] = a.bus.Dispatch(context.Background(), AddItem{OrderID: "1", SKU: string(rune('a' + i)), Quantity: 1})
		})

		recs := read(t, store, "order-1")
		for i, r := range recs {
			if r.Version != int64(i+1) {
				t.Fatalf("record %d has version %d: the stream has a gap", i, r.Version)
			}
		}
		bySKU := map[string]es.Record{}
		for _, r := range recs[1:] {
			ev, err := a.repo.Registry().Decode(r)
			if err != nil {
				t.Fatal(err)
			}
			bySKU[ev.(ItemAdded).SKU] = r
		}
		ok := 0
		for i := range writers {
			sku := string(rune('a' + i))
			rec, stored := bySKU[sku]
			switch errs[i] {
			case nil:
				ok++
				if !stored || rec.Version != results[i].Version || rec.Position != results[i].Position {
					t.Errorf("writer %s succeeded with %+v; stored: %v %+v", sku, results[i], stored, rec)
				}
			default:
				var ce *cqrs.ConflictError
				if !errors.As(errs[i], &ce) {
					t.Errorf("writer %s: %v; want success or a *ConflictError", sku, errs[i])
				}
				if stored {
					t.Errorf("writer %s failed but its event is stored", sku)
				}
			}
		}
		if len(recs) != 1+ok {
			t.Fatalf("stream has %d events for %d successful writers", len(recs), ok)
		}
		t.Logf("%d of %d writers succeeded", ok, writers)
	})
}
