package contract_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/contract"
)

func TestFromDomain(t *testing.T) {
	t.Parallel()
	lines := []orders.Line{{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}, {ProductID: "cup", Quantity: 1, UnitPriceCents: 1200}}
	for _, tc := range []struct {
		event any
		typ   string
		want  string
	}{
		{orders.OrderPlaced{OrderID: "o1", CustomerID: "c1", CustomerName: "Ann", Lines: lines}, contract.TypeOrderPlaced,
			`{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":2,"unit_price_cents":450},{"product_id":"cup","quantity":1,"unit_price_cents":1200}],"total_cents":2100}`},
		{orders.ItemAdded{OrderID: "o1", Line: lines[0]}, contract.TypeOrderItemAdded,
			`{"order_id":"o1","line":{"product_id":"tea","quantity":2,"unit_price_cents":450}}`},
		{orders.ItemRemoved{OrderID: "o1", ProductID: "tea"}, contract.TypeOrderItemRemoved, `{"order_id":"o1","product_id":"tea"}`},
		{orders.OrderConfirmed{OrderID: "o1"}, contract.TypeOrderConfirmed, `{"order_id":"o1"}`},
		{orders.OrderCancelled{OrderID: "o1", Reason: "late"}, contract.TypeOrderCancelled, `{"order_id":"o1","reason":"late"}`},
		{orders.OrderShipped{OrderID: "o1"}, contract.TypeOrderShipped, `{"order_id":"o1"}`},
	} {
		typ, value, ok, err := contract.FromDomain(tc.event)
		if err != nil || !ok || typ != tc.typ || string(value) != tc.want {
			t.Errorf("FromDomain(%T) = %s %s %v %v; want %s %s", tc.event, typ, value, ok, err, tc.typ, tc.want)
		}
		if !json.Valid(value) {
			t.Errorf("FromDomain(%T) gave invalid JSON", tc.event)
		}
	}
	for _, ev := range []any{orders.OrderPaid{OrderID: "o1"}, orders.ProductCreated{ProductID: "p"}} {
		if typ, _, ok, err := contract.FromDomain(ev); ok || err != nil {
			t.Errorf("FromDomain(%T) = %s, %v, %v; want not published", ev, typ, ok, err)
		}
	}
}

// Published names exactly the domain types FromDomain maps.
func TestPublished(t *testing.T) {
	t.Parallel()
	want := []string{orders.TypeOrderPlaced, orders.TypeItemAdded, orders.TypeItemRemoved, orders.TypeOrderConfirmed, orders.TypeOrderCancelled, orders.TypeOrderShipped}
	got := contract.Published()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Published() = %v; want %v", got, want)
	}
}
