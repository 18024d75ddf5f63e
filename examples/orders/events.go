package orders

// Product events.
type (
	ProductCreated struct {
		ProductID  string `json:"product_id"`
		Name       string `json:"name"`
		PriceCents int64  `json:"price_cents"`
	}
	ProductRenamed struct {
		ProductID string `json:"product_id"`
		Name      string `json:"name"`
	}
	ProductRepriced struct {
		ProductID  string `json:"product_id"`
		PriceCents int64  `json:"price_cents"`
	}
	ProductDiscontinued struct {
		ProductID string `json:"product_id"`
	}
)

// Line is a line item of an order: a product, how many, and the product's
// unit price when it was ordered.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order events.
type (
	// OrderPlaced is version 2 of the event; version 1 is upcast (see
	// [NewRegistry]).
	OrderPlaced struct {
		OrderID      string `json:"order_id"`
		CustomerID   string `json:"customer_id"`
		CustomerName string `json:"customer_name"`
		Lines        []Line `json:"lines"`
	}
	// ItemAdded adds Quantity of a product to an order: a new line, or
	// more of a line the order has (at that line's unit price).
	ItemAdded struct {
		OrderID string `json:"order_id"`
		Line    Line   `json:"line"`
	}
	// ItemRemoved removes the line of a product.
	ItemRemoved struct {
		OrderID   string `json:"order_id"`
		ProductID string `json:"product_id"`
	}
	OrderConfirmed struct {
		OrderID string `json:"order_id"`
	}
	OrderPaid struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
	}
	OrderShipped struct {
		OrderID string `json:"order_id"`
	}
	OrderCancelled struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason,omitempty"`
	}
	// OrderCheckoutStarted freezes the order's lines and starts the
	// checkout process, which pays AmountCents with Card.
	OrderCheckoutStarted struct {
		OrderID     string `json:"order_id"`
		Lines       []Line `json:"lines"`
		AmountCents int64  `json:"amount_cents"`
		Card        string `json:"card"`
	}
)

// Event type names, as stored.
const (
	TypeProductCreated       = "ProductCreated"
	TypeProductRenamed       = "ProductRenamed"
	TypeProductRepriced      = "ProductRepriced"
	TypeProductDiscontinued  = "ProductDiscontinued"
	TypeOrderPlaced          = "OrderPlaced.v2"
	TypeOrderPlacedV1        = "OrderPlaced.v1"
	TypeItemAdded            = "ItemAdded"
	TypeItemRemoved          = "ItemRemoved"
	TypeOrderConfirmed       = "OrderConfirmed"
	TypeOrderPaid            = "OrderPaid"
	TypeOrderShipped         = "OrderShipped"
	TypeOrderCancelled       = "OrderCancelled"
	TypeOrderCheckoutStarted = "OrderCheckoutStarted"
)

// Stream prefixes of the aggregates.
const (
	ProductStreamPrefix = "product-"
	OrderStreamPrefix   = "order-"
)
