// Package shipping is the second service of the order example: it ships
// the orders of the order service, which it learns about only from that
// service's integration events on Kafka (examples/orders/contract), never
// from its database. It keeps its own copy of the order data it needs (a
// read model built from the messages) and its own write model, a Shipment
// per order, driven by commands that the messages become.
//
// Its pieces, each a strata building block:
//
//   - the write side: the Shipment aggregate and its commands, on its own
//     event store (its own PostgreSQL schema);
//   - [OrderCopy]: a read model of the orders it has heard about, built by
//     a consume.ReadModel consumer (rows and Kafka offsets in one
//     PostgreSQL transaction);
//   - [ToCommand]: order.confirmed and order.cancelled become
//     RequestShipment and CancelShipment, dispatched by a consume.Commands
//     consumer with command IDs derived from the messages, so a message
//     delivered again is not applied twice;
//   - a projection of its own log, shipments, for its read API.
package shipping

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

// Events of a shipment, as stored in the shipping service's own log.
type (
	// ShipmentRequested: an order was confirmed, so it is to be shipped.
	ShipmentRequested struct {
		OrderID string `json:"order_id"`
	}
	// ShipmentCancelled: the order was cancelled before it left.
	ShipmentCancelled struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason,omitempty"`
	}
)

// Event type names, as stored.
const (
	TypeShipmentRequested = "ShipmentRequested"
	TypeShipmentCancelled = "ShipmentCancelled"
)

// StreamPrefix starts the stream of every shipment; the rest is the
// order's ID.
const StreamPrefix = "shipment-"

// NewRegistry returns the registry of the shipping service's events.
func NewRegistry() *es.Registry {
	r := es.NewRegistry()
	es.Register[ShipmentRequested](r, TypeShipmentRequested)
	es.Register[ShipmentCancelled](r, TypeShipmentCancelled)
	return r
}

// Status is where a shipment is.
type Status string

const (
	StatusRequested Status = "requested"
	StatusCancelled Status = "cancelled"
)

// Shipment is the write model of the shipment of one order.
type Shipment struct {
	OrderID string
	Status  Status // empty before it is requested
}

// NewShipment returns an empty shipment, for [es.NewRepository].
func NewShipment(orderID string) *Shipment { return &Shipment{OrderID: orderID} }

// Apply implements [es.Aggregate].
func (s *Shipment) Apply(event any) error {
	switch event.(type) {
	case ShipmentRequested:
		s.Status = StatusRequested
	case ShipmentCancelled:
		s.Status = StatusCancelled
	default:
		return fmt.Errorf("shipment: unexpected event %T", event)
	}
	return nil
}

// Commands. Each carries the ID the consumer derives from the message it
// came from (consume's Message.CommandID), which makes it idempotent.
type (
	RequestShipment struct {
		ID      string
		OrderID string
	}
	CancelShipment struct {
		ID      string
		OrderID string
		Reason  string
	}
)

// CommandID implements [cqrs.Identified].
func (c RequestShipment) CommandID() string { return c.ID }

// CommandID implements [cqrs.Identified].
func (c CancelShipment) CommandID() string { return c.ID }

// Validate implements cqrs's validation: an order ID is required.
func (c RequestShipment) Validate() error {
	return cqrs.Check(c.OrderID != "", "OrderID", "is required")
}

// Validate implements cqrs's validation: an order ID is required.
func (c CancelShipment) Validate() error {
	return cqrs.Check(c.OrderID != "", "OrderID", "is required")
}

// Refusals of the deciders.
var (
	ErrShipmentCancelled = errors.New("the shipment was cancelled")
	ErrNoShipment        = errors.New("no shipment was requested for the order")
)

// Deciders.
var (
	RequestShipmentDecider = cqrs.OnAny(
		func(c RequestShipment) string { return c.OrderID },
		func(_ context.Context, s *Shipment, c RequestShipment) ([]any, error) {
			switch s.Status {
			case StatusRequested:
				return nil, nil // requested already: nothing to do
			case StatusCancelled:
				return nil, ErrShipmentCancelled
			}
			return []any{ShipmentRequested{OrderID: c.OrderID}}, nil
		})

	// CancelShipmentDecider cancels a requested shipment. An order
	// cancelled before it was confirmed has no shipment: that is a
	// refusal the consumer logs and moves past, not a failure.
	CancelShipmentDecider = cqrs.OnAny(
		func(c CancelShipment) string { return c.OrderID },
		func(_ context.Context, s *Shipment, c CancelShipment) ([]any, error) {
			switch s.Status {
			case StatusCancelled:
				return nil, nil
			case "":
				return nil, ErrNoShipment
			}
			return []any{ShipmentCancelled{OrderID: c.OrderID, Reason: c.Reason}}, nil
		})
)

// NewBus returns a bus that handles the shipping commands on shipments kept
// in store.
func NewBus(store es.Store, reg *es.Registry) *cqrs.Bus {
	shipments := es.NewRepository(store, reg, NewShipment, es.RepositoryConfig{StreamPrefix: StreamPrefix})
	bus := cqrs.NewBus()
	bus.Use(cqrs.Tracing(cqrs.TracingConfig{})) // the global TracerProvider
	cqrs.Handle(bus, cqrs.Aggregate(shipments, RequestShipmentDecider, cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(shipments, CancelShipmentDecider, cqrs.AggregateConfig{}))
	return bus
}
