package shipping_test

import (
	"errors"
	"testing"

	"github.com/stratadev/strata/cqrs/cqrstest"
	"github.com/stratadev/strata/examples/orders/contract"
	"github.com/stratadev/strata/examples/shipping"
)

func TestRequestShipment(t *testing.T) {
	t.Parallel()
	reg := shipping.NewRegistry()
	cqrstest.For(t, reg, shipping.NewShipment, shipping.RequestShipmentDecider).
		When(shipping.RequestShipment{ID: "m1", OrderID: "o1"}).
		Then(shipping.ShipmentRequested{OrderID: "o1"})
	cqrstest.For(t, reg, shipping.NewShipment, shipping.RequestShipmentDecider).
		Given(shipping.ShipmentRequested{OrderID: "o1"}).
		When(shipping.RequestShipment{ID: "m2", OrderID: "o1"}).
		Then()
	cqrstest.For(t, reg, shipping.NewShipment, shipping.RequestShipmentDecider).
		Given(shipping.ShipmentRequested{OrderID: "o1"}, shipping.ShipmentCancelled{OrderID: "o1"}).
		When(shipping.RequestShipment{ID: "m3", OrderID: "o1"}).
		ThenError(shipping.ErrShipmentCancelled)
}

func TestCancelShipment(t *testing.T) {
	t.Parallel()
	reg := shipping.NewRegistry()
	cqrstest.For(t, reg, shipping.NewShipment, shipping.CancelShipmentDecider).
		Given(shipping.ShipmentRequested{OrderID: "o1"}).
		When(shipping.CancelShipment{ID: "m1", OrderID: "o1", Reason: "late"}).
		Then(shipping.ShipmentCancelled{OrderID: "o1", Reason: "late"})
	cqrstest.For(t, reg, shipping.NewShipment, shipping.CancelShipmentDecider).
		When(shipping.CancelShipment{ID: "m2", OrderID: "o1"}).
		ThenError(shipping.ErrNoShipment)
}

func TestToCommand(t *testing.T) {
	t.Parallel()
	cmd, ok, err := shipping.ToCommand(contract.TypeOrderConfirmed, []byte(`{"order_id":"o1"}`), "id-1")
	if want := (shipping.RequestShipment{ID: "id-1", OrderID: "o1"}); err != nil || !ok || cmd != want {
		t.Errorf("ToCommand(confirmed) = %v, %v, %v; want %v", cmd, ok, err, want)
	}
	cmd, ok, err = shipping.ToCommand(contract.TypeOrderCancelled, []byte(`{"order_id":"o1","reason":"r"}`), "id-2")
	if want := (shipping.CancelShipment{ID: "id-2", OrderID: "o1", Reason: "r"}); err != nil || !ok || cmd != want {
		t.Errorf("ToCommand(cancelled) = %v, %v, %v; want %v", cmd, ok, err, want)
	}
	if cmd, ok, err := shipping.ToCommand(contract.TypeOrderPlaced, []byte(`{}`), "id-3"); cmd != nil || ok || err != nil {
		t.Errorf("ToCommand(placed) = %v, %v, %v; want no command", cmd, ok, err)
	}
	if _, _, err := shipping.ToCommand("order.placed.v9", []byte(`{}`), "id-4"); !errors.Is(err, shipping.ErrUnknownType) {
		t.Errorf("ToCommand(unknown type) error %v; want ErrUnknownType", err)
	}
	if _, _, err := shipping.ToCommand(contract.TypeOrderConfirmed, []byte(`{`), "id-5"); err == nil {
		t.Error("ToCommand of malformed JSON: no error")
	}
}
