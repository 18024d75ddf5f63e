package cqrs_test

import (
	"errors"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es/memstore"
)

// A decider's refusal comes back as a *RejectedError that names the command
// and the stream and unwraps to the decider's own error.
func TestRejectedError(t *testing.T) {
	t.Parallel()
	a := newApp(memstore.New(), cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	a.mustDispatch(t, ConfirmOrder{OrderID: "1"})
	_, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
	var re *cqrs.RejectedError
	if !errors.As(err, &re) {
		t.Fatalf("Dispatch = %v, want a *RejectedError", err)
	}
	want := cqrs.RejectedError{Command: cqrs.CommandName(AddItem{}), Stream: re.Stream, Err: ErrOrderConfirmed}
	if re.Command != want.Command || re.Stream == "" || !errors.Is(re.Err, want.Err) {
		t.Errorf("RejectedError = %+v, want %+v", *re, want)
	}
	if !errors.Is(err, cqrs.ErrRejected) || !errors.Is(err, ErrOrderConfirmed) {
		t.Errorf("%v does not unwrap to ErrRejected and the decider's error", err)
	}
	// Other failures are not refusals.
	_, err = a.bus.Dispatch(t.Context(), AddItem{OrderID: "nope", SKU: "tea", Quantity: 1})
	if err == nil || errors.Is(err, cqrs.ErrRejected) {
		t.Errorf("an order that does not exist: %v; want an error that is not a rejection", err)
	}
}
