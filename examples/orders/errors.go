package orders

import (
	"errors"
	"fmt"
)

// Errors of commands that name something that is not there or not usable:
// bad input.
var (
	ErrUnknownProduct      = errors.New("unknown product")
	ErrProductDiscontinued = errors.New("product is discontinued")
	ErrItemNotInOrder      = errors.New("the order has no line for that product")
)

// Errors of commands that the aggregate's state refuses: conflicts.
var (
	ErrOrderNotOpen     = errors.New("the order is no longer open: items can only change before it is confirmed")
	ErrOrderCancelled   = errors.New("the order is cancelled")
	ErrOrderShipped     = errors.New("the order has shipped")
	ErrNotConfirmed     = errors.New("the order must be confirmed first")
	ErrNotPaid          = errors.New("the order must be paid first")
	ErrAlreadyPaid      = errors.New("the order is paid already")
	ErrAmountMismatch   = errors.New("the amount paid is not the order's total")
	ErrLastItem         = errors.New("an order keeps at least one line: cancel it instead")
	ErrTooManyItems     = errors.New("the order has too many lines")
	ErrQuantityTooLarge = errors.New("quantity too large")
	ErrCheckingOut      = errors.New("the order is in checkout: the checkout confirms or cancels it")
	ErrNoCheckout       = errors.New("the order has no checkout")
	ErrOutOfStock       = errors.New("out of stock")
	ErrPaymentSettled   = errors.New("the payment is settled already")
)

// OutOfStockError is the refusal of a reservation of more units than are
// available.
type OutOfStockError struct {
	ProductID         string
	Wanted, Available int
}

func (e *OutOfStockError) Error() string {
	return fmt.Sprintf("reserve %d of product %q: out of stock: %d available", e.Wanted, e.ProductID, e.Available)
}

// Unwrap returns [ErrOutOfStock].
func (e *OutOfStockError) Unwrap() error { return ErrOutOfStock }

// IsConflict reports whether err is a refusal by an aggregate's state
// (HTTP 409), as opposed to bad input.
func IsConflict(err error) bool {
	for _, target := range []error{ErrOrderNotOpen, ErrOrderCancelled, ErrOrderShipped, ErrNotConfirmed,
		ErrNotPaid, ErrAlreadyPaid, ErrLastItem, ErrCheckingOut, ErrNoCheckout, ErrOutOfStock, ErrPaymentSettled} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// IsBadInput reports whether err is a command naming an unknown or unusable
// product or line, or asking for too much (HTTP 400).
func IsBadInput(err error) bool {
	for _, target := range []error{ErrUnknownProduct, ErrProductDiscontinued, ErrItemNotInOrder,
		ErrAmountMismatch, ErrTooManyItems, ErrQuantityTooLarge} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
