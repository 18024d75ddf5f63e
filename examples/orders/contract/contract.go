// Package contract is the public contract of the order service's
// integration events: what it publishes to Kafka for other services (see
// projections/kafkasink), as opposed to its domain events, which are its
// own to change. A consumer depends on this package (or on the JSON it
// describes), never on the domain events.
//
// Every type is versioned in its name ("order.placed.v1"). A change that
// an existing consumer could misread (a field removed, renamed or given
// another meaning) is a new version, published next to the old one until
// every consumer has moved; adding an optional field is not.
//
// The messages of one order share its key (the order's stream ID), so a
// consumer sees them in the order they happened.
package contract

import (
	"encoding/json"
	"fmt"

	"github.com/stratadev/strata/examples/orders"
)

// Topic is the topic the order service publishes its integration events
// to.
const Topic = "orders.v1"

// The integration event types, as in the ce_type header.
const (
	TypeOrderPlaced      = "order.placed.v1"
	TypeOrderItemAdded   = "order.item_added.v1"
	TypeOrderItemRemoved = "order.item_removed.v1"
	TypeOrderConfirmed   = "order.confirmed.v1"
	TypeOrderCancelled   = "order.cancelled.v1"
	TypeOrderShipped     = "order.shipped.v1"
)

// Line is a line of an order: a product, how many, and its unit price when
// it was ordered.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderPlaced: a customer placed an order. Lines may change until the
// order is confirmed (OrderItemAdded, OrderItemRemoved).
type OrderPlaced struct {
	OrderID      string `json:"order_id"`
	CustomerID   string `json:"customer_id"`
	CustomerName string `json:"customer_name"`
	Lines        []Line `json:"lines"`
	TotalCents   int64  `json:"total_cents"`
}

// OrderItemAdded: a product was added to an open order, or more of it.
type OrderItemAdded struct {
	OrderID string `json:"order_id"`
	Line    Line   `json:"line"`
}

// OrderItemRemoved: the line of a product was removed from an open order.
type OrderItemRemoved struct {
	OrderID   string `json:"order_id"`
	ProductID string `json:"product_id"`
}

// OrderConfirmed: the order is final and can be shipped once paid.
type OrderConfirmed struct {
	OrderID string `json:"order_id"`
}

// OrderCancelled: the order will not be shipped.
type OrderCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason,omitempty"`
}

// OrderShipped: the order left the warehouse.
type OrderShipped struct {
	OrderID string `json:"order_id"`
}

// FromDomain maps a domain event of the order service to its integration
// event: the type and the JSON to publish. ok is false for domain events
// that are not published (product events, payments).
func FromDomain(event any) (typ string, value []byte, ok bool, err error) {
	var v any
	switch e := event.(type) {
	case orders.OrderPlaced:
		typ, v = TypeOrderPlaced, OrderPlaced{
			OrderID: e.OrderID, CustomerID: e.CustomerID, CustomerName: e.CustomerName,
			Lines: lines(e.Lines), TotalCents: orders.Total(e.Lines),
		}
	case orders.ItemAdded:
		typ, v = TypeOrderItemAdded, OrderItemAdded{OrderID: e.OrderID, Line: Line(e.Line)}
	case orders.ItemRemoved:
		typ, v = TypeOrderItemRemoved, OrderItemRemoved(e)
	case orders.OrderConfirmed:
		typ, v = TypeOrderConfirmed, OrderConfirmed(e)
	case orders.OrderCancelled:
		typ, v = TypeOrderCancelled, OrderCancelled(e)
	case orders.OrderShipped:
		typ, v = TypeOrderShipped, OrderShipped(e)
	default:
		return "", nil, false, nil
	}
	value, err = json.Marshal(v)
	if err != nil {
		return "", nil, false, fmt.Errorf("contract: encode %s: %w", typ, err)
	}
	return typ, value, true, nil
}

// Published lists the domain event types FromDomain maps, for a
// projection's Handles.
func Published() []string {
	return []string{
		orders.TypeOrderPlaced, orders.TypeItemAdded, orders.TypeItemRemoved,
		orders.TypeOrderConfirmed, orders.TypeOrderCancelled, orders.TypeOrderShipped,
	}
}

func lines(ls []orders.Line) []Line {
	out := make([]Line, len(ls))
	for i, l := range ls {
		out[i] = Line(l)
	}
	return out
}
