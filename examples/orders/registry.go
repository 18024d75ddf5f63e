package orders

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/stratadev/strata/es"
)

// NewRegistry returns the registry of the example's events, with the
// upcaster of OrderPlaced.v1.
func NewRegistry() *es.Registry {
	r := es.NewRegistry()
	es.Register[ProductCreated](r, TypeProductCreated)
	es.Register[ProductRenamed](r, TypeProductRenamed)
	es.Register[ProductRepriced](r, TypeProductRepriced)
	es.Register[ProductDiscontinued](r, TypeProductDiscontinued)
	es.Register[OrderPlaced](r, TypeOrderPlaced)
	es.Register[ItemAdded](r, TypeItemAdded)
	es.Register[ItemRemoved](r, TypeItemRemoved)
	es.Register[OrderConfirmed](r, TypeOrderConfirmed)
	es.Register[OrderPaid](r, TypeOrderPaid)
	es.Register[OrderShipped](r, TypeOrderShipped)
	es.Register[OrderCancelled](r, TypeOrderCancelled)
	es.Register[OrderCheckoutStarted](r, TypeOrderCheckoutStarted)
	es.Register[StockSet](r, TypeStockSet)
	es.Register[StockReserved](r, TypeStockReserved)
	es.Register[StockReleased](r, TypeStockReleased)
	es.Register[PaymentRequested](r, TypePaymentRequested)
	es.Register[PaymentCaptured](r, TypePaymentCaptured)
	es.Register[PaymentDeclined](r, TypePaymentDeclined)
	es.Register[PaymentVoided](r, TypePaymentVoided)
	r.Upcast(TypeOrderPlacedV1, UpcastOrderPlacedV1)
	return r
}

// OrderPlacedV1 is the first shape of OrderPlaced, as older streams hold
// it: the customer was only a name, and prices were decimal strings of the
// currency unit ("12.50").
type OrderPlacedV1 struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Items    []struct {
		ProductID string `json:"product_id"`
		Qty       int    `json:"qty"`
		UnitPrice string `json:"unit_price"`
	} `json:"items"`
}

// LegacyCustomerPrefix starts the customer ID that [UpcastOrderPlacedV1]
// gives orders placed before customers had IDs.
const LegacyCustomerPrefix = "legacy:"

// UpcastOrderPlacedV1 turns an OrderPlaced.v1 into the current
// OrderPlaced: the customer's name becomes the name and, prefixed with
// [LegacyCustomerPrefix], the ID; prices become cents.
func UpcastOrderPlacedV1(data json.RawMessage) (string, json.RawMessage, error) {
	var v1 OrderPlacedV1
	if err := json.Unmarshal(data, &v1); err != nil {
		return "", nil, err
	}
	v2 := OrderPlaced{
		OrderID:      v1.OrderID,
		CustomerID:   LegacyCustomerPrefix + v1.Customer,
		CustomerName: v1.Customer,
		Lines:        make([]Line, 0, len(v1.Items)),
	}
	for i, it := range v1.Items {
		cents, err := parseCents(it.UnitPrice)
		if err != nil {
			return "", nil, fmt.Errorf("items[%d].unit_price: %w", i, err)
		}
		v2.Lines = append(v2.Lines, Line{ProductID: it.ProductID, Quantity: it.Qty, UnitPriceCents: cents})
	}
	out, err := json.Marshal(v2)
	return TypeOrderPlaced, out, err
}

// parseCents reads "12.5", "12.50" or "12" as cents.
func parseCents(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q has more than two decimals", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w < 0 || w > math.MaxInt64/100-1 {
		return 0, fmt.Errorf("%q is not a price", s)
	}
	f := int64(0)
	if frac != "" {
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil || f < 0 {
			return 0, fmt.Errorf("%q is not a price", s)
		}
		if len(frac) == 1 {
			f *= 10
		}
	}
	return w*100 + f, nil
}
