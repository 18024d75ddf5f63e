package orders

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

// Product deciders.
var (
	CreateProductDecider = cqrs.OnNew(
		func(c CreateProduct) string { return c.ProductID },
		func(_ context.Context, _ *Product, c CreateProduct) ([]any, error) {
			return []any{ProductCreated{ProductID: c.ProductID, Name: c.Name, PriceCents: c.PriceCents}}, nil
		})

	RenameProductDecider = cqrs.OnExisting(
		func(c RenameProduct) string { return c.ProductID },
		func(_ context.Context, p *Product, c RenameProduct) ([]any, error) {
			if p.Name == c.Name {
				return nil, nil
			}
			return []any{ProductRenamed{ProductID: c.ProductID, Name: c.Name}}, nil
		})

	RepriceProductDecider = cqrs.OnExisting(
		func(c RepriceProduct) string { return c.ProductID },
		func(_ context.Context, p *Product, c RepriceProduct) ([]any, error) {
			if p.Discontinued {
				return nil, ErrProductDiscontinued
			}
			if p.PriceCents == c.PriceCents {
				return nil, nil
			}
			return []any{ProductRepriced{ProductID: c.ProductID, PriceCents: c.PriceCents}}, nil
		})

	DiscontinueProductDecider = cqrs.OnExisting(
		func(c DiscontinueProduct) string { return c.ProductID },
		func(_ context.Context, p *Product, c DiscontinueProduct) ([]any, error) {
			if p.Discontinued {
				return nil, nil
			}
			return []any{ProductDiscontinued{ProductID: c.ProductID}}, nil
		})
)

// Catalog tells the order deciders about products.
type Catalog interface {
	// Product returns the product, or an error wrapping
	// [ErrUnknownProduct].
	Product(ctx context.Context, id string) (*Product, error)
}

// RepositoryCatalog is a [Catalog] that loads product aggregates: the
// write side's own truth, not a read model.
type RepositoryCatalog struct{ Products *es.Repository[*Product] }

// Product implements [Catalog].
func (c RepositoryCatalog) Product(ctx context.Context, id string) (*Product, error) {
	root, err := c.Products.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !root.Exists() {
		return nil, fmt.Errorf("product %q: %w", id, ErrUnknownProduct)
	}
	return root.State, nil
}

// usable returns the product if it exists and is not discontinued.
func usable(ctx context.Context, cat Catalog, id string) (*Product, error) {
	p, err := cat.Product(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.Discontinued {
		return nil, fmt.Errorf("product %q: %w", id, ErrProductDiscontinued)
	}
	return p, nil
}

// open refuses changes to the items of an order that is not open.
func (o *Order) open() error {
	if o.CheckingOut {
		return ErrCheckingOut
	}
	switch o.Status {
	case StatusPlaced:
		return nil
	case StatusCancelled:
		return ErrOrderCancelled
	case StatusShipped:
		return ErrOrderShipped
	}
	return ErrOrderNotOpen
}

// PlaceOrderDecider places orders at the catalog's current prices.
func PlaceOrderDecider(cat Catalog) cqrs.Decider[PlaceOrder, *Order] {
	return cqrs.OnNew(
		func(c PlaceOrder) string { return c.OrderID },
		func(ctx context.Context, _ *Order, c PlaceOrder) ([]any, error) {
			e := OrderPlaced{OrderID: c.OrderID, CustomerID: c.CustomerID, CustomerName: c.CustomerName,
				Lines: make([]Line, 0, len(c.Lines))}
			for _, l := range c.Lines {
				p, err := usable(ctx, cat, l.ProductID)
				if err != nil {
					return nil, err
				}
				e.Lines = append(e.Lines, Line{ProductID: l.ProductID, Quantity: l.Quantity, UnitPriceCents: p.PriceCents})
			}
			return []any{e}, nil
		})
}

// AddItemDecider adds items at the catalog's current price (or the price
// of the product's line, when the order has one).
func AddItemDecider(cat Catalog) cqrs.Decider[AddItem, *Order] {
	return cqrs.OnExisting(
		func(c AddItem) string { return c.OrderID },
		func(ctx context.Context, o *Order, c AddItem) ([]any, error) {
			if err := o.open(); err != nil {
				return nil, err
			}
			line := Line{ProductID: c.ProductID, Quantity: c.Quantity}
			if i := o.line(c.ProductID); i >= 0 {
				if o.Lines[i].Quantity+c.Quantity > MaxQuantity {
					return nil, fmt.Errorf("%w: a line holds at most %d", ErrQuantityTooLarge, MaxQuantity)
				}
				line.UnitPriceCents = o.Lines[i].UnitPriceCents
			} else {
				if len(o.Lines) >= MaxLines {
					return nil, fmt.Errorf("%w: at most %d", ErrTooManyItems, MaxLines)
				}
				p, err := usable(ctx, cat, c.ProductID)
				if err != nil {
					return nil, err
				}
				line.UnitPriceCents = p.PriceCents
			}
			return []any{ItemAdded{OrderID: c.OrderID, Line: line}}, nil
		})
}

// Order deciders that need nothing but the order.
var (
	RemoveItemDecider = cqrs.OnExisting(
		func(c RemoveItem) string { return c.OrderID },
		func(_ context.Context, o *Order, c RemoveItem) ([]any, error) {
			if err := o.open(); err != nil {
				return nil, err
			}
			if o.line(c.ProductID) < 0 {
				return nil, fmt.Errorf("product %q: %w", c.ProductID, ErrItemNotInOrder)
			}
			if len(o.Lines) == 1 {
				return nil, ErrLastItem
			}
			return []any{ItemRemoved{OrderID: c.OrderID, ProductID: c.ProductID}}, nil
		})

	ConfirmOrderDecider = cqrs.OnExisting(
		func(c ConfirmOrder) string { return c.OrderID },
		func(_ context.Context, o *Order, c ConfirmOrder) ([]any, error) {
			if o.CheckingOut {
				return nil, ErrCheckingOut
			}
			switch o.Status {
			case StatusConfirmed:
				return nil, nil
			case StatusPaid, StatusShipped:
				return nil, fmt.Errorf("%w: it is %s", ErrOrderNotOpen, o.Status)
			}
			if err := o.open(); err != nil {
				return nil, err
			}
			return []any{OrderConfirmed{OrderID: c.OrderID}}, nil
		})

	PayOrderDecider = cqrs.OnExisting(
		func(c PayOrder) string { return c.OrderID },
		func(_ context.Context, o *Order, c PayOrder) ([]any, error) {
			if o.CheckingOut {
				return nil, ErrCheckingOut
			}
			switch o.Status {
			case StatusConfirmed:
			case StatusPlaced:
				return nil, ErrNotConfirmed
			case StatusPaid:
				return nil, ErrAlreadyPaid
			case StatusShipped:
				return nil, ErrOrderShipped
			default:
				return nil, ErrOrderCancelled
			}
			if c.AmountCents != o.Total() {
				return nil, fmt.Errorf("%w: paid %d, total %d", ErrAmountMismatch, c.AmountCents, o.Total())
			}
			return []any{OrderPaid{OrderID: c.OrderID, AmountCents: c.AmountCents}}, nil
		})

	ShipOrderDecider = cqrs.OnExisting(
		func(c ShipOrder) string { return c.OrderID },
		func(_ context.Context, o *Order, c ShipOrder) ([]any, error) {
			switch o.Status {
			case StatusPaid:
				return []any{OrderShipped{OrderID: c.OrderID}}, nil
			case StatusShipped:
				return nil, nil
			case StatusCancelled:
				return nil, ErrOrderCancelled
			}
			return nil, ErrNotPaid
		})

	CancelOrderDecider = cqrs.OnExisting(
		func(c CancelOrder) string { return c.OrderID },
		func(_ context.Context, o *Order, c CancelOrder) ([]any, error) {
			if o.CheckingOut {
				return nil, ErrCheckingOut
			}
			switch o.Status {
			case StatusCancelled:
				return nil, nil
			case StatusShipped:
				return nil, fmt.Errorf("%w: it can no longer be cancelled", ErrOrderShipped)
			}
			return []any{OrderCancelled{OrderID: c.OrderID, Reason: c.Reason}}, nil
		})
)

// Checkout deciders: the order's side of the checkout process.
var (
	// CheckoutOrderDecider freezes an open order and starts its checkout.
	CheckoutOrderDecider = cqrs.OnExisting(
		func(c CheckoutOrder) string { return c.OrderID },
		func(_ context.Context, o *Order, c CheckoutOrder) ([]any, error) {
			if err := o.open(); err != nil {
				return nil, err
			}
			return []any{OrderCheckoutStarted{OrderID: c.OrderID, Lines: slices.Clone(o.Lines), AmountCents: o.Total(),
				Card: cmp.Or(c.Card, CardOK)}}, nil
		})

	// CompleteCheckoutDecider confirms an order in checkout and records
	// its payment.
	CompleteCheckoutDecider = cqrs.OnExisting(
		func(c CompleteCheckout) string { return c.OrderID },
		func(_ context.Context, o *Order, c CompleteCheckout) ([]any, error) {
			switch {
			case o.CheckingOut:
				return []any{OrderConfirmed{OrderID: c.OrderID}, OrderPaid{OrderID: c.OrderID, AmountCents: c.AmountCents}}, nil
			case o.Status == StatusCancelled:
				return nil, ErrOrderCancelled
			case o.Status == StatusPlaced:
				return nil, ErrNoCheckout
			}
			return nil, nil // completed already
		})

	// FailCheckoutDecider cancels an order in checkout.
	FailCheckoutDecider = cqrs.OnExisting(
		func(c FailCheckout) string { return c.OrderID },
		func(_ context.Context, o *Order, c FailCheckout) ([]any, error) {
			switch {
			case o.CheckingOut:
				return []any{OrderCancelled{OrderID: c.OrderID, Reason: c.Reason}}, nil
			case o.Status == StatusCancelled:
				return nil, nil // failed already
			case o.Status == StatusPlaced:
				return nil, ErrNoCheckout
			}
			return nil, fmt.Errorf("%w: it is %s", ErrOrderNotOpen, o.Status)
		})
)

// Repositories are the example's aggregate repositories.
type Repositories struct {
	Products  *es.Repository[*Product]
	Orders    *es.Repository[*Order]
	Inventory *es.Repository[*Inventory]
	Payments  *es.Repository[*Payment]
}

// NewRepositories returns the repositories on store.
func NewRepositories(store es.Store, reg *es.Registry) Repositories {
	return Repositories{
		Products:  es.NewRepository(store, reg, NewProduct, es.RepositoryConfig{StreamPrefix: ProductStreamPrefix}),
		Orders:    es.NewRepository(store, reg, NewOrder, es.RepositoryConfig{StreamPrefix: OrderStreamPrefix}),
		Inventory: es.NewRepository(store, reg, NewInventory, es.RepositoryConfig{StreamPrefix: InventoryStreamPrefix}),
		Payments:  es.NewRepository(store, reg, NewPayment, es.RepositoryConfig{StreamPrefix: PaymentStreamPrefix}),
	}
}

// Register wires every command of the example to bus.
func Register(bus *cqrs.Bus, repos Repositories) {
	cat := RepositoryCatalog{Products: repos.Products}
	opts := cqrs.AggregateConfig{}
	cqrs.Handle(bus, cqrs.Aggregate(repos.Products, CreateProductDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Products, RenameProductDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Products, RepriceProductDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Products, DiscontinueProductDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, PlaceOrderDecider(cat), opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, AddItemDecider(cat), opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, RemoveItemDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, ConfirmOrderDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, PayOrderDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, ShipOrderDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, CancelOrderDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, CheckoutOrderDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, CompleteCheckoutDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Orders, FailCheckoutDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Inventory, SetStockDecider(cat), opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Inventory, ReserveStockDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Inventory, ReleaseStockDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Payments, RequestPaymentDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Payments, CapturePaymentDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Payments, DeclinePaymentDecider, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repos.Payments, VoidPaymentDecider, opts))
}
