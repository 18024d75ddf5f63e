package orders

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
)

// PaymentStreamPrefix starts the stream of an order's payment: "payment-"
// and the order's ID, which is the payment's ID.
const PaymentStreamPrefix = "payment-"

// Cards of the simulated payment gateway: how it answers a payment.
const (
	CardOK      = "ok"      // captured at once
	CardDecline = "decline" // declined at once
	CardSlow    = "slow"    // answered after the checkout's deadline, when it is too late
)

// Cards lists the cards of the simulated gateway.
var Cards = []string{CardOK, CardDecline, CardSlow}

// Payment events.
type (
	PaymentRequested struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
		Card        string `json:"card"`
	}
	PaymentCaptured struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
	}
	PaymentDeclined struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason,omitempty"`
	}
	// PaymentVoided closes a payment that was not answered in time: a
	// capture that comes later is refused.
	PaymentVoided struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason,omitempty"`
	}
)

// Payment event type names, as stored.
const (
	TypePaymentRequested = "PaymentRequested"
	TypePaymentCaptured  = "PaymentCaptured"
	TypePaymentDeclined  = "PaymentDeclined"
	TypePaymentVoided    = "PaymentVoided"
)

// Payment commands, sent by the checkout process (RequestPayment,
// VoidPayment) and the simulated gateway (CapturePayment, DeclinePayment).
type (
	RequestPayment struct {
		process.ID
		OrderID     string
		AmountCents int64
		Card        string
	}
	CapturePayment struct {
		process.ID
		OrderID string
	}
	DeclinePayment struct {
		process.ID
		OrderID string
		Reason  string
	}
	VoidPayment struct {
		process.ID
		OrderID string
		Reason  string
	}
)

func checkCard(card string) error {
	return cqrs.Check(slices.Contains(Cards, card), "card", fmt.Sprintf("must be one of %q", Cards))
}

func checkReason(r string) error {
	return cqrs.Check(utf8.RuneCountInString(r) <= 500 && utf8.ValidString(r), "reason", "must be at most 500 characters of UTF-8")
}

func (c RequestPayment) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), cqrs.Check(c.AmountCents > 0, "amount_cents", "must be positive"), checkCard(c.Card))
}

func (c CapturePayment) Validate() error { return checkID(c.OrderID, "order_id") }

func (c DeclinePayment) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), checkReason(c.Reason))
}

func (c VoidPayment) Validate() error {
	return errors.Join(checkID(c.OrderID, "order_id"), checkReason(c.Reason))
}

// PaymentStatus is where a payment is.
type PaymentStatus string

const (
	PaymentStatusRequested PaymentStatus = "requested"
	PaymentStatusCaptured  PaymentStatus = "captured"
	PaymentStatusDeclined  PaymentStatus = "declined"
	PaymentStatusVoided    PaymentStatus = "voided"
)

// Payment is the write model of an order's payment.
type Payment struct {
	OrderID     string
	Status      PaymentStatus // "" before it is requested
	AmountCents int64
	Card        string
}

// NewPayment returns an empty payment, for [es.NewRepository].
func NewPayment(id string) *Payment { return &Payment{OrderID: id} }

// Apply implements [es.Aggregate].
func (p *Payment) Apply(event any) error {
	switch e := event.(type) {
	case PaymentRequested:
		p.Status, p.AmountCents, p.Card = PaymentStatusRequested, e.AmountCents, e.Card
	case PaymentCaptured:
		p.Status = PaymentStatusCaptured
	case PaymentDeclined:
		p.Status = PaymentStatusDeclined
	case PaymentVoided:
		p.Status = PaymentStatusVoided
	default:
		return fmt.Errorf("payment: unexpected event %T", event)
	}
	return nil
}

// settled refuses to change a payment that is no longer requested, unless
// it is already in status want (then the command is a no-op).
func (p *Payment) settled(want PaymentStatus) (noop bool, err error) {
	switch p.Status {
	case PaymentStatusRequested:
		return false, nil
	case want:
		return true, nil
	}
	return false, fmt.Errorf("%w: it is %s", ErrPaymentSettled, p.Status)
}

// Payment deciders.
var (
	RequestPaymentDecider = cqrs.OnAny(
		func(c RequestPayment) string { return c.OrderID },
		func(_ context.Context, p *Payment, c RequestPayment) ([]any, error) {
			if p.Status != "" {
				return nil, nil // asked once per order
			}
			return []any{PaymentRequested{OrderID: c.OrderID, AmountCents: c.AmountCents, Card: c.Card}}, nil
		})

	CapturePaymentDecider = cqrs.OnExisting(
		func(c CapturePayment) string { return c.OrderID },
		func(_ context.Context, p *Payment, c CapturePayment) ([]any, error) {
			if noop, err := p.settled(PaymentStatusCaptured); noop || err != nil {
				return nil, err
			}
			return []any{PaymentCaptured{OrderID: c.OrderID, AmountCents: p.AmountCents}}, nil
		})

	DeclinePaymentDecider = cqrs.OnExisting(
		func(c DeclinePayment) string { return c.OrderID },
		func(_ context.Context, p *Payment, c DeclinePayment) ([]any, error) {
			if noop, err := p.settled(PaymentStatusDeclined); noop || err != nil {
				return nil, err
			}
			return []any{PaymentDeclined{OrderID: c.OrderID, Reason: c.Reason}}, nil
		})

	VoidPaymentDecider = cqrs.OnExisting(
		func(c VoidPayment) string { return c.OrderID },
		func(_ context.Context, p *Payment, c VoidPayment) ([]any, error) {
			if noop, err := p.settled(PaymentStatusVoided); noop || err != nil {
				return nil, err
			}
			return []any{PaymentVoided{OrderID: c.OrderID, Reason: c.Reason}}, nil
		})
)
