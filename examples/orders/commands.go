package orders

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
)

// Limits of command input.
const (
	MaxNameLength = 200
	MaxQuantity   = 10_000
	MaxLines      = 100
	MaxPriceCents = 100_000_000_00 // 100 million in the currency unit
	MaxIDLength   = 100
)

// Key is embedded in every command: an optional idempotency key, such as
// the HTTP Idempotency-Key header. A command sent again with the same key
// is handled once (see [cqrs.Identified]).
type Key struct {
	IdempotencyKey string `json:"-"`
}

// CommandID implements [cqrs.Identified].
func (k Key) CommandID() string { return k.IdempotencyKey }

// Product commands.
type (
	CreateProduct struct {
		Key
		ProductID  string
		Name       string
		PriceCents int64
	}
	RenameProduct struct {
		Key
		ProductID string
		Name      string
	}
	RepriceProduct struct {
		Key
		ProductID  string
		PriceCents int64
	}
	DiscontinueProduct struct {
		Key
		ProductID string
	}
)

// LineRequest asks for a quantity of a product; the price is the product's
// when the order is placed.
type LineRequest struct {
	ProductID string
	Quantity  int
}

// Order commands.
type (
	PlaceOrder struct {
		Key
		OrderID      string
		CustomerID   string
		CustomerName string
		Lines        []LineRequest
	}
	AddItem struct {
		Key
		OrderID   string
		ProductID string
		Quantity  int
	}
	RemoveItem struct {
		Key
		OrderID   string
		ProductID string
	}
	ConfirmOrder struct {
		Key
		OrderID string
	}
	PayOrder struct {
		Key
		OrderID     string
		AmountCents int64
	}
	ShipOrder struct {
		Key
		OrderID string
	}
	CancelOrder struct {
		Key
		OrderID string
		Reason  string
	}
	// CheckoutOrder freezes an open order and starts its checkout: the
	// checkout process reserves its stock, takes its payment with Card
	// (see [Cards]; "" is [CardOK]) and confirms or cancels it.
	CheckoutOrder struct {
		Key
		OrderID string
		Card    string
	}
)

// Commands of the checkout process: it ends a checkout with one of them.
type (
	// CompleteCheckout confirms the order and records its payment.
	CompleteCheckout struct {
		process.ID
		OrderID     string
		AmountCents int64
	}
	// FailCheckout cancels the order.
	FailCheckout struct {
		process.ID
		OrderID string
		Reason  string
	}
)

func checkID(v, field string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return cqrs.FieldError{Field: field, Message: "is required"}
	case len(v) > MaxIDLength || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00/ \t\n"):
		return cqrs.FieldError{Field: field, Message: fmt.Sprintf("must be at most %d bytes of UTF-8 without slashes or spaces", MaxIDLength)}
	}
	return nil
}

// checkName refuses empty and long names, invalid UTF-8, control
// characters (a name is one line) and U+FFFD, which stands for bytes that
// were not UTF-8 (a JSON decoder puts it in place of a lone surrogate
// escape such as \ud800), so that a garbled name is refused rather than
// stored garbled.
func checkName(v, field string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return cqrs.FieldError{Field: field, Message: "must not be empty"}
	case utf8.RuneCountInString(v) > MaxNameLength || !utf8.ValidString(v):
		return cqrs.FieldError{Field: field, Message: fmt.Sprintf("must be at most %d characters of UTF-8", MaxNameLength)}
	case strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }):
		return cqrs.FieldError{Field: field, Message: "must not contain control characters or U+FFFD (invalid UTF-8)"}
	}
	return nil
}

func checkPrice(v int64, field string) error {
	return cqrs.Check(v > 0 && v <= MaxPriceCents, field, fmt.Sprintf("must be between 1 and %d", int64(MaxPriceCents)))
}

func checkQuantity(v int, field string) error {
	return cqrs.Check(v > 0 && v <= MaxQuantity, field, fmt.Sprintf("must be between 1 and %d", MaxQuantity))
}

func (c CreateProduct) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"), checkName(c.Name, "name"), checkPrice(c.PriceCents, "price_cents"))
}

func (c RenameProduct) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"), checkName(c.Name, "name"))
}

func (c RepriceProduct) Validate() error {
	return errors.Join(checkID(c.ProductID, "product_id"), checkPrice(c.PriceCents, "price_cents"))
}

func (c DiscontinueProduct) Validate() error { return checkID(c.ProductID, "product_id") }

func (c PlaceOrder) Validate() error {
	errs := []error{
		checkID(c.OrderID, "order_id"), checkID(c.CustomerID, "customer_id"), checkName(c.CustomerName, "customer_name"),
		cqrs.Check(len(c.Lines) > 0, "lines", "must not be empty"),
		cqrs.Check(len(c.Lines) <= MaxLines, "lines", fmt.Sprintf("must have at most %d lines", MaxLines)),
	}
	seen := make(map[string]bool, len(c.Lines))
	for i, l := range c.Lines {
		f := fmt.Sprintf("lines[%d].", i)
		errs = append(errs, checkID(l.ProductID, f+"product_id"), checkQuantity(l.Quantity, f+"quantity"),
			cqrs.Check(!seen[l.ProductID], f+"product_id", "appears twice; one line per product"))
		seen[l.ProductID] = true
	}
	return errors.Join(errs...)
}

func (c AddItem) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), checkID(c.ProductID, "product_id"), checkQuantity(c.Quantity, "quantity"))
}

func (c RemoveItem) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), checkID(c.ProductID, "product_id"))
}

func (c ConfirmOrder) Validate() error { return checkID(c.OrderID, "order_id") }

func (c PayOrder) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), cqrs.Check(c.AmountCents > 0, "amount_cents", "must be positive"))
}

func (c ShipOrder) Validate() error { return checkID(c.OrderID, "order_id") }

func (c CancelOrder) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"),
		cqrs.Check(utf8.RuneCountInString(c.Reason) <= 500 && utf8.ValidString(c.Reason), "reason", "must be at most 500 characters of UTF-8"))
}

func (c CheckoutOrder) Validate() error {
	if c.Card == "" {
		return checkID(c.OrderID, "order_id")
	}
	return errors.Join(checkID(c.OrderID, "order_id"), checkCard(c.Card))
}

func (c CompleteCheckout) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), cqrs.Check(c.AmountCents > 0, "amount_cents", "must be positive"))
}

func (c FailCheckout) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), checkReason(c.Reason))
}
