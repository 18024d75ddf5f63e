package orders_test

import (
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/cqrstest"
	"github.com/stratadev/strata/examples/orders"
)

func TestReserveStock(t *testing.T) {
	t.Parallel()
	reg := orders.NewRegistry()
	set := orders.StockSet{ProductID: "tea", Level: 3}
	reserve := func(order string, q int) orders.ReserveStock {
		return orders.ReserveStock{ProductID: "tea", OrderID: order, Quantity: q}
	}
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).Given(set).
		When(reserve("o1", 2)).Then(orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2})
	// Keyed by order: a second reservation of the same order is a no-op.
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).
		Given(set, orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2}).
		When(reserve("o1", 2)).Then()
	// Not more than is available; a product whose stock was never set has
	// none.
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).
		Given(set, orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2}).
		When(reserve("o2", 2)).ThenError(orders.ErrOutOfStock)
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).
		When(reserve("o2", 1)).ThenError(orders.ErrOutOfStock)
	// Released stock is available again, but not to the order that
	// released it: a reservation dispatched again late takes nothing.
	released := []any{set, orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2},
		orders.StockReleased{ProductID: "tea", OrderID: "o1", Quantity: 2}}
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).Given(released...).
		When(reserve("o1", 2)).Then()
	cqrstest.For(t, reg, orders.NewInventory, orders.ReserveStockDecider).Given(released...).
		When(reserve("o2", 3)).Then(orders.StockReserved{ProductID: "tea", OrderID: "o2", Quantity: 3})
}

func TestReleaseStock(t *testing.T) {
	t.Parallel()
	reg := orders.NewRegistry()
	release := orders.ReleaseStock{ProductID: "tea", OrderID: "o1"}
	cqrstest.For(t, reg, orders.NewInventory, orders.ReleaseStockDecider).
		Given(orders.StockSet{ProductID: "tea", Level: 3}, orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2}).
		When(release).Then(orders.StockReleased{ProductID: "tea", OrderID: "o1", Quantity: 2})
	cqrstest.For(t, reg, orders.NewInventory, orders.ReleaseStockDecider).
		Given(orders.StockSet{ProductID: "tea", Level: 3}, orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2},
			orders.StockReleased{ProductID: "tea", OrderID: "o1", Quantity: 2}).
		When(release).Then()
	cqrstest.For(t, reg, orders.NewInventory, orders.ReleaseStockDecider).When(release).Then()
}

func TestSetStockNeedsAProduct(t *testing.T) {
	t.Parallel()
	reg := orders.NewRegistry()
	cqrstest.For(t, reg, orders.NewInventory, orders.SetStockDecider(testCatalog)).
		When(orders.SetStock{ProductID: "tea", Level: 5}).Then(orders.StockSet{ProductID: "tea", Level: 5})
	cqrstest.For(t, reg, orders.NewInventory, orders.SetStockDecider(testCatalog)).
		When(orders.SetStock{ProductID: "nope", Level: 5}).ThenError(orders.ErrUnknownProduct)
	cqrstest.For(t, reg, orders.NewInventory, orders.SetStockDecider(testCatalog)).
		When(orders.SetStock{ProductID: "tea", Level: -1}).ThenError(cqrs.ErrInvalidCommand)
}

// A payment voided after its deadline refuses a capture that comes late:
// no payment is captured for an order the checkout cancelled.
func TestLateCaptureRefused(t *testing.T) {
	t.Parallel()
	reg := orders.NewRegistry()
	requested := orders.PaymentRequested{OrderID: "o1", AmountCents: 900, Card: orders.CardSlow}
	cqrstest.For(t, reg, orders.NewPayment, orders.CapturePaymentDecider).
		Given(requested, orders.PaymentVoided{OrderID: "o1"}).
		When(orders.CapturePayment{OrderID: "o1"}).ThenError(orders.ErrPaymentSettled)
	cqrstest.For(t, reg, orders.NewPayment, orders.CapturePaymentDecider).
		Given(requested).
		When(orders.CapturePayment{OrderID: "o1"}).Then(orders.PaymentCaptured{OrderID: "o1", AmountCents: 900})
	// And the void comes too late for a captured payment.
	cqrstest.For(t, reg, orders.NewPayment, orders.VoidPaymentDecider).
		Given(requested, orders.PaymentCaptured{OrderID: "o1", AmountCents: 900}).
		When(orders.VoidPayment{OrderID: "o1"}).ThenError(orders.ErrPaymentSettled)
	cqrstest.For(t, reg, orders.NewPayment, orders.DeclinePaymentDecider).
		Given(requested, orders.PaymentDeclined{OrderID: "o1"}).
		When(orders.DeclinePayment{OrderID: "o1"}).Then()
	cqrstest.For(t, reg, orders.NewPayment, orders.RequestPaymentDecider).
		Given(requested).When(orders.RequestPayment{OrderID: "o1", AmountCents: 900, Card: orders.CardOK}).Then()
}

func TestCheckoutFreezesTheOrder(t *testing.T) {
	t.Parallel()
	reg := orders.NewRegistry()
	started := orders.OrderCheckoutStarted{OrderID: "o1", Lines: placed.Lines, AmountCents: 900, Card: orders.CardOK}
	cqrstest.For(t, reg, orders.NewOrder, orders.CheckoutOrderDecider).Given(placed).
		When(orders.CheckoutOrder{OrderID: "o1"}).Then(started)
	cqrstest.For(t, reg, orders.NewOrder, orders.CheckoutOrderDecider).Given(placed).
		When(orders.CheckoutOrder{OrderID: "o1", Card: "gold"}).ThenError(cqrs.ErrInvalidCommand)
	cqrstest.For(t, reg, orders.NewOrder, orders.CheckoutOrderDecider).Given(placed, started).
		When(orders.CheckoutOrder{OrderID: "o1"}).ThenError(orders.ErrCheckingOut)
	cqrstest.For(t, reg, orders.NewOrder, orders.AddItemDecider(testCatalog)).Given(placed, started).
		When(orders.AddItem{OrderID: "o1", ProductID: "cup", Quantity: 1}).ThenError(orders.ErrCheckingOut)
	cqrstest.For(t, reg, orders.NewOrder, orders.ConfirmOrderDecider).Given(placed, started).
		When(orders.ConfirmOrder{OrderID: "o1"}).ThenError(orders.ErrCheckingOut)
	cqrstest.For(t, reg, orders.NewOrder, orders.CancelOrderDecider).Given(placed, started).
		When(orders.CancelOrder{OrderID: "o1"}).ThenError(orders.ErrCheckingOut)
	cqrstest.For(t, reg, orders.NewOrder, orders.PayOrderDecider).Given(placed, started).
		When(orders.PayOrder{OrderID: "o1", AmountCents: 900}).ThenError(orders.ErrCheckingOut)
	// Only the checkout ends it.
	cqrstest.For(t, reg, orders.NewOrder, orders.CompleteCheckoutDecider).Given(placed, started).
		When(orders.CompleteCheckout{OrderID: "o1", AmountCents: 900}).
		Then(orders.OrderConfirmed{OrderID: "o1"}, orders.OrderPaid{OrderID: "o1", AmountCents: 900})
	cqrstest.For(t, reg, orders.NewOrder, orders.FailCheckoutDecider).Given(placed, started).
		When(orders.FailCheckout{OrderID: "o1", Reason: "payment declined"}).
		Then(orders.OrderCancelled{OrderID: "o1", Reason: "payment declined"})
	cqrstest.For(t, reg, orders.NewOrder, orders.CompleteCheckoutDecider).Given(placed).
		When(orders.CompleteCheckout{OrderID: "o1", AmountCents: 900}).ThenError(orders.ErrNoCheckout)
	cqrstest.For(t, reg, orders.NewOrder, orders.CompleteCheckoutDecider).Given(placed, started, orders.OrderCancelled{OrderID: "o1"}).
		When(orders.CompleteCheckout{OrderID: "o1", AmountCents: 900}).ThenError(orders.ErrOrderCancelled)
	cqrstest.For(t, reg, orders.NewOrder, orders.FailCheckoutDecider).Given(placed, started, orders.OrderCancelled{OrderID: "o1"}).
		When(orders.FailCheckout{OrderID: "o1"}).Then()
}
