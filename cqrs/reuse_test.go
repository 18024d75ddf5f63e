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

// checkReused fails the test unless err is a *cqrs.CommandIDReusedError
// with the given fields.
func checkReused(t *testing.T, what string, err error, want cqrs.CommandIDReusedError) {
	t.Helper()
	var got *cqrs.CommandIDReusedError
	if !errors.Is(err, cqrs.ErrCommandIDReused) || !errors.As(err, &got) {
		t.Fatalf("%s: %v; want a *cqrs.CommandIDReusedError", what, err)
	}
	fields := *got
	fields.Err = nil
	if fields != want {
		t.Fatalf("%s: got %+v; want %+v", what, fields, want)
	}
}

// checkStream fails the test unless stream holds events of these types.
func checkStream(t *testing.T, store es.Store, stream, want string) {
	t.Helper()
	if got := strings.Join(types(read(t, store, stream)), ","); got != want {
		t.Fatalf("%s: %s; want %s", stream, got, want)
	}
}

// TestCommandIDSameCommand: a command dispatched again with the same ID
// and payload gets the original result and appends nothing, whichever way
// its handler meets the earlier events: the store's idempotent re-append
// (OnNew), the store's refusal of the event IDs (OnExisting), a decision
// that fails (the order is confirmed), or one of no events.
func TestCommandIDSameCommand(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		place := PlaceOrder{ID: "k-place", OrderID: "1", Customer: "ann"}
		add := AddItem{ID: "k-add", OrderID: "1", SKU: "tea", Quantity: 1}
		note := SetNote{ID: "k-note", OrderID: "1", Note: "ring twice"}
		confirm := &ConfirmOrder{ID: "k-confirm", OrderID: "1"}
		var first []cqrs.Result
		for _, cmd := range []any{place, add, note, confirm} {
			first = append(first, a.mustDispatch(t, cmd))
		}
		for i, cmd := range []any{place, add, note, confirm} {
			if again := a.mustDispatch(t, cmd); again != first[i] {
				t.Errorf("%T dispatched again: %+v; want the original %+v", cmd, again, first[i])
			}
		}
		checkStream(t, store, "order-1", "OrderPlaced,ItemAdded,NoteSet,OrderConfirmed,NoteSet")
	})
}

// TestCommandIDOtherPayload: a command with the ID of an earlier command of
// its type but another payload is refused with a *CommandIDReusedError, and
// nothing is written, on every path.
func TestCommandIDOtherPayload(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{ID: "k-place", OrderID: "1", Customer: "ann"})
		a.mustDispatch(t, AddItem{ID: "k-add", OrderID: "1", SKU: "tea", Quantity: 1})
		a.mustDispatch(t, SetNote{ID: "k-note", OrderID: "1", Note: "first"})
		a.mustDispatch(t, SetNote{OrderID: "1", Note: "second"})
		const stream = "order-1"
		const want = "OrderPlaced,ItemAdded,NoteSet,NoteSet"
		checkStream(t, store, stream, want)

		for _, tc := range []struct {
			name string
			cmd  any
			want cqrs.CommandIDReusedError
		}{
			// The store re-appends the same IDs at the same place.
			{"create", PlaceOrder{ID: "k-place", OrderID: "1", Customer: "bob"},
				cqrs.CommandIDReusedError{Command: "cqrs_test.PlaceOrder", CommandID: "k-place", Stream: stream, Differs: cqrs.ReusedPayload}},
			// The store refuses the IDs: they are stored earlier.
			{"change", AddItem{ID: "k-add", OrderID: "1", SKU: "tea", Quantity: 5},
				cqrs.CommandIDReusedError{Command: "cqrs_test.AddItem", CommandID: "k-add", Stream: stream, Differs: cqrs.ReusedPayload}},
			// The decision is no events: the note is "second" already.
			{"no-op", SetNote{ID: "k-note", OrderID: "1", Note: "second"},
				cqrs.CommandIDReusedError{Command: "cqrs_test.SetNote", CommandID: "k-note", Stream: stream, Differs: cqrs.ReusedPayload}},
		} {
			_, err := a.bus.Dispatch(t.Context(), tc.cmd)
			checkReused(t, tc.name, err, tc.want)
			checkStream(t, store, stream, want)
		}
		// The error says what happened.
		_, err := a.bus.Dispatch(t.Context(), AddItem{ID: "k-add", OrderID: "1", SKU: "cake", Quantity: 1})
		if want := `cqrs: handle cqrs_test.AddItem for order-1: command id "k-add" was already used by a command with another payload`; err == nil || err.Error() != want {
			t.Errorf("error text:\n got %v\nwant %s", err, want)
		}
	})
}

// TestCommandIDOtherAggregate: a command with the ID of an earlier command
// of its type on another aggregate is refused with a *CommandIDReusedError,
// and nothing is written.
func TestCommandIDOtherAggregate(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		a.mustDispatch(t, PlaceOrder{ID: "k-place", OrderID: "1", Customer: "ann"})
		a.mustDispatch(t, PlaceOrder{OrderID: "2", Customer: "bob"})
		a.mustDispatch(t, AddItem{ID: "k-add", OrderID: "1", SKU: "tea", Quantity: 1})

		_, err := a.bus.Dispatch(t.Context(), AddItem{ID: "k-add", OrderID: "2", SKU: "tea", Quantity: 1})
		checkReused(t, "change", err, cqrs.CommandIDReusedError{Command: "cqrs_test.AddItem", CommandID: "k-add", Stream: "order-2", Differs: cqrs.ReusedAggregate})
		if !errors.Is(err, es.ErrDuplicateEventID) {
			t.Errorf("change: %v does not unwrap to the store's es.ErrDuplicateEventID", err)
		}
		_, err = a.bus.Dispatch(t.Context(), PlaceOrder{ID: "k-place", OrderID: "3", Customer: "ann"})
		checkReused(t, "create", err, cqrs.CommandIDReusedError{Command: "cqrs_test.PlaceOrder", CommandID: "k-place", Stream: "order-3", Differs: cqrs.ReusedAggregate})

		checkStream(t, store, "order-1", "OrderPlaced,ItemAdded")
		checkStream(t, store, "order-2", "OrderPlaced")
		checkStream(t, store, "order-3", "")
	})
}

// TestCommandIDConcurrent: the same command ID dispatched twice at once
// is applied exactly once. With the same payload both callers get its
// result; with different payloads the loser gets a *CommandIDReusedError.
func TestCommandIDConcurrent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		a := newApp(store, cqrs.AggregateConfig{})
		for round := range 10 {
			for _, same := range []bool{true, false} {
				order := fmt.Sprint(round, "-", same)
				places := [2]any{
					PlaceOrder{ID: "place-" + order, OrderID: order, Customer: "ann"},
					PlaceOrder{ID: "place-" + order, OrderID: order, Customer: "bob"},
				}
				adds := [2]any{
					AddItem{ID: "add-" + order, OrderID: order, SKU: "tea", Quantity: 1},
					AddItem{ID: "add-" + order, OrderID: order, SKU: "tea", Quantity: 2},
				}
				if same {
					places[1], adds[1] = places[0], adds[0]
				}
				dispatchTwice(t, a, places, same, "cqrs_test.PlaceOrder", "order-"+order)
				dispatchTwice(t, a, adds, same, "cqrs_test.AddItem", "order-"+order)
				checkStream(t, store, "order-"+order, "OrderPlaced,ItemAdded")
			}
		}
	})
}

// dispatchTwice dispatches cmds at once and checks the outcome.
func dispatchTwice(t *testing.T, a *app, cmds [2]any, same bool, name, stream string) {
	t.Helper()
	var (
		res  [2]cqrs.Result
		errs [2]error
	)
	together(2, func(i int) { res[i], errs[i] = a.bus.Dispatch(context.Background(), cmds[i]) })
	if same {
		if errs[0] != nil || errs[1] != nil || res[0] != res[1] {
			t.Fatalf("%s twice at once: %+v, %v and %+v, %v; want the same result twice", name, res[0], errs[0], res[1], errs[1])
		}
		return
	}
	won := 0
	if errs[0] != nil {
		won = 1
	}
	lost := 1 - won
	if errs[won] != nil {
		t.Fatalf("%s with two payloads at once: both failed: %v; %v", name, errs[0], errs[1])
	}
	id := cmds[lost].(cqrs.Identified).CommandID()
	checkReused(t, name+" with two payloads at once", errs[lost], cqrs.CommandIDReusedError{Command: name, CommandID: id, Stream: stream, Differs: cqrs.ReusedPayload})
}
