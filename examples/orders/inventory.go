package orders

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
)

// MaxStock bounds the stock level of a product.
const MaxStock = 1_000_000_000

// InventoryStreamPrefix starts the stream of a product's inventory:
// "inventory-" and the product's ID.
const InventoryStreamPrefix = "inventory-"

// Inventory events.
type (
	// StockSet sets how many units of a product are in stock, reserved
	// ones included.
	StockSet struct {
		ProductID string `json:"product_id"`
		Level     int    `json:"level"`
	}
	// StockReserved holds Quantity units of a product for an order.
	StockReserved struct {
		ProductID string `json:"product_id"`
		OrderID   string `json:"order_id"`
		Quantity  int    `json:"quantity"`
	}
	// StockReleased gives an order's reservation back.
	StockReleased struct {
		ProductID string `json:"product_id"`
		OrderID   string `json:"order_id"`
		Quantity  int    `json:"quantity"`
	}
)

// Inventory event type names, as stored.
const (
	TypeStockSet      = "StockSet"
	TypeStockReserved = "StockReserved"
	TypeStockReleased = "StockReleased"
)

// Inventory commands. SetStock comes from an operator; ReserveStock and
// ReleaseStock from the checkout process, keyed by order: an order
// reserves a product once, and a released reservation is never taken
// again, however often either command is handled.
type (
	SetStock struct {
		Key
		ProductID string
		Level     int
	}
	ReserveStock struct {
		process.ID
		ProductID string
		OrderID   string
		Quantity  int
	}
	ReleaseStock struct {
		process.ID
		ProductID string
		OrderID   string
	}
)

func (c SetStock) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"),
		cqrs.Check(c.Level >= 0 && c.Level <= MaxStock, "level", fmt.Sprintf("must be between 0 and %d", MaxStock)))
}

func (c ReserveStock) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"), checkID(c.OrderID, "order_id"), checkQuantity(c.Quantity, "quantity"))
}

func (c ReleaseStock) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"), checkID(c.OrderID, "order_id"))
}

// Inventory is the write model of a product's stock: its level and the
// reservations of orders.
type Inventory struct {
	ProductID string
	Level     int            // units in stock, reserved ones included
	Reserved  int            // units reserved
	Orders    map[string]int // order ID → units it holds
	Released  map[string]bool
}

// NewInventory returns an empty inventory, for [es.NewRepository]: a
// product whose stock was never set has none.
func NewInventory(id string) *Inventory {
	return &Inventory{ProductID: id, Orders: map[string]int{}, Released: map[string]bool{}}
}

// Available is how many units can still be reserved.
func (inv *Inventory) Available() int { return max(inv.Level-inv.Reserved, 0) }

// Apply implements [es.Aggregate].
func (inv *Inventory) Apply(event any) error {
	switch e := event.(type) {
	case StockSet:
		inv.Level = e.Level
	case StockReserved:
		inv.Orders[e.OrderID] = e.Quantity
		inv.Reserved += e.Quantity
	case StockReleased:
		inv.Reserved -= inv.Orders[e.OrderID]
		delete(inv.Orders, e.OrderID)
		inv.Released[e.OrderID] = true
	default:
		return fmt.Errorf("inventory: unexpected event %T", event)
	}
	return nil
}

// SetStockDecider sets the stock of a product of the catalog.
func SetStockDecider(cat Catalog) cqrs.Decider[SetStock, *Inventory] {
	return cqrs.OnAny(
		func(c SetStock) string { return c.ProductID },
		func(ctx context.Context, inv *Inventory, c SetStock) ([]any, error) {
			if _, err := cat.Product(ctx, c.ProductID); err != nil {
				return nil, err
			}
			if inv.Level == c.Level {
				return nil, nil
			}
			return []any{StockSet{ProductID: c.ProductID, Level: c.Level}}, nil
		})
}

// Inventory deciders of the checkout process.
var (
	// ReserveStockDecider reserves units for an order, or refuses with
	// [ErrOutOfStock]. An order that holds, or held, a reservation of the
	// product gets nothing more: the command is a no-op.
	ReserveStockDecider = cqrs.OnAny(
		func(c ReserveStock) string { return c.ProductID },
		func(_ context.Context, inv *Inventory, c ReserveStock) ([]any, error) {
			if _, ok := inv.Orders[c.OrderID]; ok || inv.Released[c.OrderID] {
				return nil, nil
			}
			if inv.Available() < c.Quantity {
				return nil, &OutOfStockError{ProductID: c.ProductID, Wanted: c.Quantity, Available: inv.Available()}
			}
			return []any{StockReserved{ProductID: c.ProductID, OrderID: c.OrderID, Quantity: c.Quantity}}, nil
		})

	// ReleaseStockDecider gives an order's reservation back; without one
	// it is a no-op. A released order can no longer reserve the product.
	ReleaseStockDecider = cqrs.OnAny(
		func(c ReleaseStock) string { return c.ProductID },
		func(_ context.Context, inv *Inventory, c ReleaseStock) ([]any, error) {
			q, ok := inv.Orders[c.OrderID]
			if !ok {
				return nil, nil
			}
			return []any{StockReleased{ProductID: c.ProductID, OrderID: c.OrderID, Quantity: q}}, nil
		})
)
