package orders

import (
	"fmt"
	"slices"
)

// Status is where an order is in its life.
type Status string

const (
	StatusPlaced    Status = "placed" // open: items may change
	StatusConfirmed Status = "confirmed"
	StatusPaid      Status = "paid"
	StatusShipped   Status = "shipped"
	StatusCancelled Status = "cancelled"
)

// Statuses lists every status, in the order of an order's life.
var Statuses = []Status{StatusPlaced, StatusConfirmed, StatusPaid, StatusShipped, StatusCancelled}

// Order is the write model of an order.
type Order struct {
	ID         string
	Status     Status // "" before it is placed
	CustomerID string
	Lines      []Line
	// CheckingOut is set while the checkout process runs: only that
	// process confirms or cancels the order then.
	CheckingOut bool
}

// NewOrder returns an empty order, for [es.NewRepository].
func NewOrder(id string) *Order { return &Order{ID: id} }

// Total is the sum of the lines' quantity times unit price.
func (o *Order) Total() int64 { return Total(o.Lines) }

// Total is the sum of the lines' quantity times unit price.
func Total(lines []Line) int64 {
	var t int64
	for _, l := range lines {
		t += int64(l.Quantity) * l.UnitPriceCents
	}
	return t
}

// line returns the index of the line of product id, or -1.
func (o *Order) line(productID string) int {
	return slices.IndexFunc(o.Lines, func(l Line) bool { return l.ProductID == productID })
}

// Apply implements [es.Aggregate].
func (o *Order) Apply(event any) error {
	switch e := event.(type) {
	case OrderPlaced:
		o.Status, o.CustomerID, o.Lines = StatusPlaced, e.CustomerID, slices.Clone(e.Lines)
	case ItemAdded:
		o.Lines = AddLine(o.Lines, e.Line)
	case ItemRemoved:
		o.Lines = RemoveLine(o.Lines, e.ProductID)
	case OrderCheckoutStarted:
		o.CheckingOut = true
	case OrderConfirmed:
		o.Status, o.CheckingOut = StatusConfirmed, false
	case OrderPaid:
		o.Status = StatusPaid
	case OrderShipped:
		o.Status = StatusShipped
	case OrderCancelled:
		o.Status, o.CheckingOut = StatusCancelled, false
	default:
		return fmt.Errorf("order: unexpected event %T", event)
	}
	return nil
}

// AddLine returns lines with l added: a new line, or more of the product's
// line at that line's unit price. It is shared by the aggregate and the
// read models, so they agree.
func AddLine(lines []Line, l Line) []Line {
	for i := range lines {
		if lines[i].ProductID == l.ProductID {
			lines = slices.Clone(lines)
			lines[i].Quantity += l.Quantity
			return lines
		}
	}
	return append(slices.Clip(lines), l)
}

// RemoveLine returns lines without the line of productID.
func RemoveLine(lines []Line, productID string) []Line {
	return slices.DeleteFunc(slices.Clone(lines), func(l Line) bool { return l.ProductID == productID })
}
