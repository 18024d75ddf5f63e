package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

// TestValidationBeforeAnything: every failing field is reported, and the
// store is not touched.
func TestValidationBeforeAnything(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store es.Store) {
		counted := &countingStore{Store: store}
		a := newApp(counted, cqrs.AggregateConfig{})
		for _, cmd := range []any{
			PlaceOrder{ID: "v1"},
			AddItem{ID: "v2", OrderID: "1", Quantity: -1},
		} {
			_, err := a.bus.Dispatch(t.Context(), cmd)
			var ve *cqrs.ValidationError
			if !errors.Is(err, cqrs.ErrInvalidCommand) || !errors.As(err, &ve) {
				t.Fatalf("dispatch %+v: %v; want a *ValidationError", cmd, err)
			}
			if ve.Command != cqrs.CommandName(cmd) || len(ve.Fields) != 2 {
				t.Fatalf("dispatch %+v: %+v; want two fields", cmd, ve)
			}
		}
		if r, w := counted.reads.Load(), counted.appends.Load(); r != 0 || w != 0 {
			t.Fatalf("invalid commands caused %d reads and %d appends", r, w)
		}
	})
}

func TestValidationError(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	called := false
	cqrs.Handle(bus, func(context.Context, AddItem) (cqrs.Result, error) {
		called = true
		return cqrs.Result{}, nil
	})
	_, err := bus.Dispatch(t.Context(), AddItem{})
	if called {
		t.Fatal("the handler ran for an invalid command")
	}
	want := "cqrs: invalid command cqrs_test.AddItem: OrderID: is required; SKU: is required; Quantity: must be positive"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
	var ve *cqrs.ValidationError
	errors.As(err, &ve)
	wantFields := []cqrs.FieldError{{"OrderID", "is required"}, {"SKU", "is required"}, {"Quantity", "must be positive"}}
	if fmt.Sprint(ve.Fields) != fmt.Sprint(wantFields) {
		t.Fatalf("fields: %v; want %v", ve.Fields, wantFields)
	}
	// The caller's own errors are reachable too.
	var fe cqrs.FieldError
	if !errors.As(err, &fe) || fe.Field != "OrderID" {
		t.Fatalf("errors.As FieldError: %v", fe)
	}
}

type shipTo struct {
	Street, City string
	Window       [2]int
}

// Validate has a pointer receiver, wraps a join and adds a plain error.
func (s *shipTo) Validate() error {
	var errs []error
	if s.Window[0] > s.Window[1] {
		errs = append(errs, errors.New("the delivery window ends before it starts"))
	}
	errs = append(errs, fmt.Errorf("address: %w", errors.Join(
		cqrs.Check(s.Street != "", "Street", "is required"),
		&cqrs.FieldError{Field: "City", Message: "is required"},
	)))
	return errors.Join(errs...)
}

func TestValidationShapes(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	cqrs.Handle(bus, func(context.Context, shipTo) (cqrs.Result, error) { return cqrs.Result{}, nil })
	_, err := bus.Dispatch(t.Context(), shipTo{Window: [2]int{5, 1}})
	var ve *cqrs.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v; want a *ValidationError", err)
	}
	want := "cqrs: invalid command cqrs_test.shipTo: the delivery window ends before it starts; address: Street: is required; City: is required"
	if err.Error() != want {
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
	if fmt.Sprint(ve.Fields) != "[Street: is required City: is required]" {
		t.Fatalf("fields: %v", ve.Fields)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	if err := cqrs.Check(true, "F", "bad"); err != nil {
		t.Fatalf("Check(true): %v", err)
	}
	if err := cqrs.Check(false, "F", "bad"); err == nil || err.Error() != "F: bad" {
		t.Fatalf("Check(false): %v", err)
	}
}
