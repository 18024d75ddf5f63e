// Package orders is the domain of the order-query example: a product
// catalog and orders whose line items point at products.
//
// A [Product] is created with a name and a price, renamed, repriced and
// discontinued. An [Order] is placed for a customer with line items (a
// product, a quantity and the product's unit price at the time of
// ordering); items are added or removed while it is open; it is confirmed,
// paid and shipped, or cancelled (not after shipping). The aggregates
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
