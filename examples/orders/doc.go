// Package orders is the domain of the order-query example: a product
// catalog and orders whose line items point at products.
//
// A [Product] is created with a name and a price, renamed, repriced and
// discontinued. An [Order] is placed for a customer with line items (a
// product, a quantity and the product's unit price at the time of
// ordering); items are added or removed while it is open; it is confirmed,
// paid and shipped, or cancelled (not after shipping).
//
// [CheckoutOrder] freezes an open order and starts the checkout process
// (package examples/orders/checkout), which alone confirms and pays it
// ([CompleteCheckout]) or cancels it ([FailCheckout]). It reserves stock on
// an [Inventory] per product (its level set with [SetStock]; reservations
// keyed by order, so that [ReserveStock] and [ReleaseStock] take effect
// once per order however often they are handled) and takes the payment on
// a [Payment] per order, which a simulated gateway captures or declines
// and the checkout voids when it comes too late: a capture after the void
// is refused with [ErrPaymentSettled]. [ConfirmOrder] stays the back
// office's way to confirm an order without a checkout. The aggregates
// enforce these rules and refuse a command that breaks one with an error
// that wraps one of this package's sentinels, such as [ErrOrderCancelled].
//
// Commands are plain structs with a Validate method (see [cqrs.Validator]);
// [Register] wires their deciders to a bus. The order deciders read the
// product aggregates (through a [Catalog]) to refuse an unknown or
// discontinued product before anything is written: the write side never
// depends on a read model.
//
// Events are versioned: [NewRegistry] registers the current shapes and an
// upcaster that reads the first shape of OrderPlaced ("OrderPlaced.v1").
package orders
