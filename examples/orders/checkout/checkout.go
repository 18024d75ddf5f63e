// Package checkout is the checkout process of the order example: a
// process manager (see package cqrs/process) that takes an order from
// [orders.OrderCheckoutStarted] to confirmed and paid, or to cancelled
// with nothing held.
//
// For each line it reserves the product's stock ([orders.ReserveStock]).
// When every line is reserved it requests the payment
// ([orders.RequestPayment]) and sets a deadline, Config.PaymentTimeout.
// Then:
//
//   - payment captured: the order is confirmed and paid
//     ([orders.CompleteCheckout]) and the deadline cancelled;
//   - a line out of stock: what was reserved is released and the order
//     cancelled;
//   - payment declined: the stock is released, the order cancelled;
//   - no answer by the deadline: the payment is voided
//     ([orders.VoidPayment]), so that a capture coming later is refused,
//     and once it is void the stock is released and the order cancelled.
//     A capture or a decline that the payment took before the void wins
//     the race, and the checkout ends as it says.
//
// [Gateway] is the simulated payment gateway: another process manager,
// which answers each [orders.PaymentRequested] by the card of the order
// (see [orders.Cards]): captured, declined, or captured too late.
//
// [Runners] runs both on PostgreSQL (cqrs/process/pgprocess); [Read]
// reads where a checkout is, for the order screen.
package checkout

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections"
)

// Name is the checkout process manager's name: its log follower is the
// projection "process:checkout".
const Name = "checkout"

// Projection is the name of the checkout's log follower, a pgsink
// projection: its checkpoint says which events the checkout has seen.
const Projection = pgprocess.ProjectionPrefix + Name

// PaymentDeadline names the checkout's deadline for the payment.
const PaymentDeadline = "payment"

// Defaults for [Config].
const (
	PaymentTimeoutDefault = 30 * time.Second
)

// Config tunes the checkout and the simulated gateway. The zero value
// works.
type Config struct {
	// PaymentTimeout is how long a checkout waits for the payment before
	// it voids it and cancels the order. Defaults to 30s.
	PaymentTimeout time.Duration
	// SlowAnswer is how long the simulated gateway takes to answer a
	// payment with the card "slow". Defaults to twice PaymentTimeout, so
	// that the checkout has timed out when the capture comes.
	SlowAnswer time.Duration
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.PaymentTimeout < 0 {
		errs = append(errs, fmt.Errorf("checkout: Config.PaymentTimeout is %v; want 0 (default) or more", c.PaymentTimeout))
	}
	if c.SlowAnswer < 0 {
		errs = append(errs, fmt.Errorf("checkout: Config.SlowAnswer is %v; want 0 (default) or more", c.SlowAnswer))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.PaymentTimeout = cmp.Or(c.PaymentTimeout, PaymentTimeoutDefault)
	c.SlowAnswer = cmp.Or(c.SlowAnswer, 2*c.PaymentTimeout)
	return c
}

// Statuses of a checkout, in [State].Status.
const (
	StatusReserving       = "reserving"        // reserving the stock of each line
	StatusAwaitingPayment = "awaiting_payment" // stock reserved, payment requested
	StatusVoiding         = "voiding"          // the payment timed out; voiding it
	StatusConfirmed       = "confirmed"        // paid; the order is confirmed
	StatusCancelled       = "cancelled"        // the order is cancelled; nothing is held
)

// Reasons of a cancelled checkout.
const (
	ReasonOutOfStock = "out of stock"
	ReasonDeclined   = "payment declined"
	ReasonTimedOut   = "payment timed out"
)

// State is a checkout's state.
type State struct {
	OrderID     string        `json:"order_id"`
	Status      string        `json:"status"`
	Reason      string        `json:"reason,omitempty"` // why it was cancelled
	Lines       []orders.Line `json:"lines"`
	AmountCents int64         `json:"amount_cents"`
	Card        string        `json:"card"`
	// Reserved lists the products whose stock this order holds; Answered
	// those whose reservation was answered (reserved or refused).
	Reserved []string `json:"reserved,omitempty"`
	Answered []string `json:"answered,omitempty"`
	// OutOfStock lists the products whose reservation was refused.
	OutOfStock []string `json:"out_of_stock,omitempty"`
	// VoidRefused is set when the payment refused the checkout's void
	// because its capture or decline came first. Until that refusal comes
	// back, a checkout that voids does not end: the refusal of a command
	// of an ended process would be left unhandled (stuck, for the CLI).
	VoidRefused bool `json:"void_refused,omitempty"`
}

// Process is the checkout process manager. Make it with [New].
type Process struct{ cfg Config }

// New returns the checkout process manager. It panics if cfg is invalid.
func New(cfg Config) Process {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return Process{cfg: cfg.withDefaults()}
}

var _ process.Manager[State] = Process{}

// Name implements [process.Manager].
func (Process) Name() string { return Name }

// Handles implements [process.Manager].
func (Process) Handles() []string {
	return []string{orders.TypeOrderCheckoutStarted, orders.TypeStockReserved,
		orders.TypePaymentCaptured, orders.TypePaymentDeclined, orders.TypePaymentVoided}
}

// Correlate implements [process.Manager]: by order ID.
func (Process) Correlate(ev projections.Event) (string, bool) {
	switch e := ev.Data.(type) {
	case orders.OrderCheckoutStarted:
		return e.OrderID, true
	case orders.StockReserved:
		return e.OrderID, true
	case orders.PaymentCaptured:
		return e.OrderID, true
	case orders.PaymentDeclined:
		return e.OrderID, true
	case orders.PaymentVoided:
		return e.OrderID, true
	}
	return "", false
}

type decision = process.Decision[State]

// Decide implements [process.Manager].
func (p Process) Decide(s State, in process.Input) (decision, error) {
	switch in := in.(type) {
	case process.EventReceived:
		switch e := in.Event.Data.(type) {
		case orders.OrderCheckoutStarted:
			if s.Status != "" {
				return decision{State: s}, nil // seen already
			}
			s = State{OrderID: e.OrderID, Status: StatusReserving, Lines: e.Lines, AmountCents: e.AmountCents, Card: e.Card}
			d := decision{State: s}
			for _, l := range e.Lines {
				d.Commands = append(d.Commands, orders.ReserveStock{ProductID: l.ProductID, OrderID: e.OrderID, Quantity: l.Quantity})
			}
			return d, nil
		case orders.StockReserved:
			if s.Status != StatusReserving || slices.Contains(s.Answered, e.ProductID) {
				return decision{State: s}, nil // a reservation seen already
			}
			s.Answered = append(s.Answered, e.ProductID)
			s.Reserved = append(s.Reserved, e.ProductID)
			return p.reserved(s), nil
		case orders.PaymentCaptured:
			if s.Status != StatusAwaitingPayment && s.Status != StatusVoiding {
				return decision{State: s}, nil
			}
			voiding := s.Status == StatusVoiding
			s.Status = StatusConfirmed
			return decision{State: s, Commands: []any{orders.CompleteCheckout{OrderID: s.OrderID, AmountCents: e.AmountCents}},
				Cancel: []string{PaymentDeadline}, Done: !voiding || s.VoidRefused}, nil
		case orders.PaymentDeclined:
			if s.Status != StatusAwaitingPayment && s.Status != StatusVoiding {
				return decision{State: s}, nil
			}
			voiding := s.Status == StatusVoiding
			d := cancel(s, ReasonDeclined)
			d.Cancel = []string{PaymentDeadline}
			d.Done = !voiding || s.VoidRefused
			return d, nil
		case orders.PaymentVoided:
			if s.Status != StatusVoiding {
				return decision{State: s}, nil
			}
			return cancel(s, ReasonTimedOut), nil
		}
		return decision{}, fmt.Errorf("checkout: unexpected event %T", in.Event.Data)
	case process.DeadlineFired:
		if in.Name != PaymentDeadline || s.Status != StatusAwaitingPayment {
			return decision{State: s}, nil
		}
		s.Status = StatusVoiding
		return decision{State: s, Commands: []any{orders.VoidPayment{OrderID: s.OrderID, Reason: ReasonTimedOut}}}, nil
	case process.CommandRejected:
		switch c := in.Command.(type) {
		case orders.ReserveStock:
			if s.Status != StatusReserving || slices.Contains(s.Answered, c.ProductID) {
				return decision{State: s}, nil
			}
			s.Answered = append(s.Answered, c.ProductID)
			s.OutOfStock = append(s.OutOfStock, c.ProductID)
			return p.reserved(s), nil
		case orders.VoidPayment:
			// The payment was captured or declined first: its event
			// decides, and ends the checkout when it came already.
			s.VoidRefused = true
			return decision{State: s, Done: s.Status == StatusConfirmed || s.Status == StatusCancelled}, nil
		}
		return decision{}, fmt.Errorf("checkout: %s refused: %w", cqrs.CommandName(in.Command), in.Err)
	}
	return decision{}, fmt.Errorf("checkout: unexpected input %T", in)
}

// reserved decides after a reservation was answered: it releases what is
// reserved once one line is out of stock, and requests the payment, or
// cancels the order, once every line is answered.
func (p Process) reserved(s State) decision {
	if len(s.OutOfStock) > 0 {
		// Release each reservation once: those made before the refusal
		// now, later ones as they come.
		var d decision
		for _, id := range s.Reserved {
			d.Commands = append(d.Commands, orders.ReleaseStock{ProductID: id, OrderID: s.OrderID})
		}
		s.Reserved = nil
		if len(s.Answered) == len(s.Lines) {
			s.Status, s.Reason = StatusCancelled, ReasonOutOfStock+": "+strings.Join(s.OutOfStock, ", ")
			d.Commands = append(d.Commands, orders.FailCheckout{OrderID: s.OrderID, Reason: s.Reason})
			d.Done = true
		}
		d.State = s
		return d
	}
	if len(s.Answered) < len(s.Lines) {
		return decision{State: s}
	}
	s.Status = StatusAwaitingPayment
	return decision{State: s,
		Commands:  []any{orders.RequestPayment{OrderID: s.OrderID, AmountCents: s.AmountCents, Card: s.Card}},
		Deadlines: []process.Deadline{{Name: PaymentDeadline, After: p.cfg.PaymentTimeout}},
	}
}

// cancel releases every reservation and cancels the order.
func cancel(s State, reason string) decision {
	d := decision{Done: true}
	for _, id := range s.Reserved {
		d.Commands = append(d.Commands, orders.ReleaseStock{ProductID: id, OrderID: s.OrderID})
	}
	s.Reserved, s.Status, s.Reason = nil, StatusCancelled, reason
	d.Commands = append(d.Commands, orders.FailCheckout{OrderID: s.OrderID, Reason: reason})
	d.State = s
	return d
}
