package checkout

import (
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections"
)

// GatewayName is the simulated gateway's process manager name: its log
// follower is the projection "process:payment-gateway".
const GatewayName = "payment-gateway"

// answerDeadline names the gateway's deadline of a slow answer.
const answerDeadline = "answer"

// GatewayState is the simulated gateway's state of one payment.
type GatewayState struct {
	OrderID string `json:"order_id"`
	Card    string `json:"card"`
	// Refused is set when the payment refused the answer because it was
	// settled (voided) already.
	Refused bool `json:"refused,omitempty"`
}

// Gateway simulates the payment gateway: it answers each
// [orders.PaymentRequested] by its card, with [orders.CapturePayment]
// ("ok"), [orders.DeclinePayment] ("decline") or, after
// Config.SlowAnswer, a capture that comes too late ("slow"). An instance
// completes when its answer is on the payment ([orders.PaymentCaptured]
// or [orders.PaymentDeclined]), or when the payment refuses it with
// [orders.ErrPaymentSettled] because the checkout voided it first: the
// refusal is the expected end of a late answer, not a command left
// unresolved (see pgprocess.StuckRule). Any other refusal fails the
// instance, so that it shows. It is a process manager so that its answers
// survive restarts; a real gateway would be called by a command handler,
// with the payment's ID as its idempotency key (see the README). Make it
// with [NewGateway].
type Gateway struct{ cfg Config }

// NewGateway returns the simulated gateway. It panics if cfg is invalid.
func NewGateway(cfg Config) Gateway {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return Gateway{cfg: cfg.withDefaults()}
}

var _ process.Manager[GatewayState] = Gateway{}

// Name implements [process.Manager].
func (Gateway) Name() string { return GatewayName }

// Handles implements [process.Manager].
func (Gateway) Handles() []string {
	return []string{orders.TypePaymentRequested, orders.TypePaymentCaptured, orders.TypePaymentDeclined}
}

// Correlate implements [process.Manager]: by order (payment) ID.
func (Gateway) Correlate(ev projections.Event) (string, bool) {
	switch e := ev.Data.(type) {
	case orders.PaymentRequested:
		return e.OrderID, true
	case orders.PaymentCaptured:
		return e.OrderID, true
	case orders.PaymentDeclined:
		return e.OrderID, true
	}
	return "", false
}

// Decide implements [process.Manager].
func (g Gateway) Decide(s GatewayState, in process.Input) (process.Decision[GatewayState], error) {
	type decision = process.Decision[GatewayState]
	switch in := in.(type) {
	case process.EventReceived:
		switch e := in.Event.Data.(type) {
		case orders.PaymentRequested:
			s = GatewayState{OrderID: e.OrderID, Card: e.Card}
			switch e.Card {
			case orders.CardDecline:
				return decision{State: s, Commands: []any{orders.DeclinePayment{OrderID: e.OrderID, Reason: "card declined"}}}, nil
			case orders.CardSlow:
				return decision{State: s, Deadlines: []process.Deadline{{Name: answerDeadline, After: g.cfg.SlowAnswer}}}, nil
			}
			return decision{State: s, Commands: []any{orders.CapturePayment{OrderID: e.OrderID}}}, nil
		case orders.PaymentCaptured, orders.PaymentDeclined:
			// The answer is on the payment.
			return decision{State: s, Done: true}, nil
		}
		return decision{}, fmt.Errorf("payment gateway: unexpected event %T", in.Event.Data)
	case process.DeadlineFired:
		return decision{State: s, Commands: []any{orders.CapturePayment{OrderID: s.OrderID}}}, nil
	case process.CommandRejected:
		if errors.Is(in.Err, orders.ErrPaymentSettled) {
			// Too late: the checkout voided the payment first. A real
			// gateway would refund the charge here.
			s.Refused = true
			return decision{State: s, Done: true}, nil
		}
		return decision{}, fmt.Errorf("payment gateway: %T refused: %w", in.Command, in.Err)
	}
	return decision{}, fmt.Errorf("payment gateway: unexpected input %T", in)
}
