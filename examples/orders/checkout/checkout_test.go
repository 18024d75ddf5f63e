package checkout_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/processtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/projections"
)

var cfg = checkout.Config{PaymentTimeout: time.Minute}

var started = orders.OrderCheckoutStarted{OrderID: "o1", AmountCents: 2100, Card: orders.CardOK, Lines: []orders.Line{
	{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}, {ProductID: "cup", Quantity: 1, UnitPriceCents: 1200}}}

var (
	reservedTea = orders.StockReserved{ProductID: "tea", OrderID: "o1", Quantity: 2}
	reservedCup = orders.StockReserved{ProductID: "cup", OrderID: "o1", Quantity: 1}
	requested   = orders.RequestPayment{OrderID: "o1", AmountCents: 2100, Card: orders.CardOK}
	releaseTea  = orders.ReleaseStock{ProductID: "tea", OrderID: "o1"}
	releaseCup  = orders.ReleaseStock{ProductID: "cup", OrderID: "o1"}
	outOfStock  = &cqrs.RejectedError{Err: orders.ErrOutOfStock}
)

func scenario(t *testing.T) *processtest.Scenario[checkout.State] {
	return processtest.For(t, checkout.New(cfg))
}

func TestStartReservesEachLine(t *testing.T) {
	t.Parallel()
	s := scenario(t).When(started).
		Then(orders.ReserveStock{ProductID: "tea", OrderID: "o1", Quantity: 2}, orders.ReserveStock{ProductID: "cup", OrderID: "o1", Quantity: 1}).
		ThenDeadlines().ThenDone(false)
	if got := s.State().Status; got != checkout.StatusReserving {
		t.Errorf("status is %q; want %q", got, checkout.StatusReserving)
	}
}

func TestAllReservedRequestsPaymentWithDeadline(t *testing.T) {
	t.Parallel()
	scenario(t).Given(started, reservedTea).When(reservedCup).
		Then(requested).
		ThenDeadlines(process.Deadline{Name: checkout.PaymentDeadline, After: time.Minute}).
		ThenDone(false)
	// One line is not enough.
	scenario(t).Given(started).When(reservedTea).Then().ThenDeadlines()
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	s := scenario(t).Given(started, reservedTea, reservedCup).
		When(orders.PaymentCaptured{OrderID: "o1", AmountCents: 2100}).
		Then(orders.CompleteCheckout{OrderID: "o1", AmountCents: 2100}).
		ThenCancelled(checkout.PaymentDeadline).
		ThenDone(true)
	if got := s.State(); got.Status != checkout.StatusConfirmed || len(got.Reserved) != 2 {
		t.Errorf("state: status %q, reserved %v; want confirmed holding tea and cup", got.Status, got.Reserved)
	}
}

func TestOutOfStockReleasesPartialReservations(t *testing.T) {
	t.Parallel()
	// tea reserved, then cup refused: tea is released, the order cancelled.
	s := scenario(t).Given(started, reservedTea).
		WhenRejected(orders.ReserveStock{ProductID: "cup", OrderID: "o1", Quantity: 1}, outOfStock).
		Then(releaseTea, orders.FailCheckout{OrderID: "o1", Reason: "out of stock: cup"}).
		ThenDeadlines().ThenDone(true)
	if got := s.State(); got.Status != checkout.StatusCancelled || len(got.Reserved) != 0 || got.OutOfStock[0] != "cup" {
		t.Errorf("state: status %q, reserved %v, out of stock %v; want cancelled, nothing held, cup", got.Status, got.Reserved, got.OutOfStock)
	}

	// cup refused first: nothing to release yet, and no cancel before
	// tea is answered; tea's reservation then is released at once and
	// the order cancelled.
	p := process.Define[checkout.State](checkout.New(cfg))
	out := steps(t, p, event(started), process.CommandRejected{Command: orders.ReserveStock{ProductID: "cup", OrderID: "o1", Quantity: 1}, Err: outOfStock})
	if len(out.Commands) != 0 || out.Done {
		t.Errorf("after the refusal alone: commands %v, done %v; want none, not done", out.Commands, out.Done)
	}
	out = steps(t, p, event(started), process.CommandRejected{Command: orders.ReserveStock{ProductID: "cup", OrderID: "o1", Quantity: 1}, Err: outOfStock},
		event(reservedTea))
	want := []any{releaseTea, orders.FailCheckout{OrderID: "o1", Reason: "out of stock: cup"}}
	if !sameCommands(out.Commands, want) || !out.Done {
		t.Errorf("after tea's late reservation: commands %+v, done %v; want %+v, done", out.Commands, out.Done, want)
	}
}

func TestDeclineReleasesAndCancels(t *testing.T) {
	t.Parallel()
	scenario(t).Given(started, reservedTea, reservedCup).
		When(orders.PaymentDeclined{OrderID: "o1", Reason: "card declined"}).
		Then(releaseTea, releaseCup, orders.FailCheckout{OrderID: "o1", Reason: checkout.ReasonDeclined}).
		ThenCancelled(checkout.PaymentDeadline).
		ThenDone(true)
}

func TestTimeoutVoidsThenReleasesAndCancels(t *testing.T) {
	t.Parallel()
	s := scenario(t).Given(started, reservedTea, reservedCup).
		WhenElapsed(time.Minute).
		Then(orders.VoidPayment{OrderID: "o1", Reason: checkout.ReasonTimedOut}).
		ThenDone(false)
	if got := s.State().Status; got != checkout.StatusVoiding {
		t.Errorf("status is %q; want %q", got, checkout.StatusVoiding)
	}
	scenario(t).Given(started, reservedTea, reservedCup).Elapsed(time.Minute).
		When(orders.PaymentVoided{OrderID: "o1", Reason: checkout.ReasonTimedOut}).
		Then(releaseTea, releaseCup, orders.FailCheckout{OrderID: "o1", Reason: checkout.ReasonTimedOut}).
		ThenDone(true)
	// Not before the deadline.
	scenario(t).Given(started, reservedTea, reservedCup).Elapsed(59 * time.Second).
		WhenElapsed(time.Second).
		Then(orders.VoidPayment{OrderID: "o1", Reason: checkout.ReasonTimedOut})
}

// The capture raced the void and won: the payment is captured, so the
// order is confirmed; the void's refusal changes nothing.
func TestCaptureBeforeVoidWins(t *testing.T) {
	t.Parallel()
	scenario(t).Given(started, reservedTea, reservedCup).Elapsed(time.Minute).
		WhenRejected(orders.VoidPayment{OrderID: "o1", Reason: checkout.ReasonTimedOut},
			&cqrs.RejectedError{Err: orders.ErrPaymentSettled}).
		Then().ThenDone(false)
	// The capture or decline decides, but the checkout ends only once the
	// refusal of its void is back: a refusal that came after the end would
	// be a command nobody handled.
	scenario(t).Given(started, reservedTea, reservedCup).Elapsed(time.Minute).
		When(orders.PaymentCaptured{OrderID: "o1", AmountCents: 2100}).
		Then(orders.CompleteCheckout{OrderID: "o1", AmountCents: 2100}).
		ThenDone(false)
	scenario(t).Given(started, reservedTea, reservedCup).Elapsed(time.Minute).
		When(orders.PaymentDeclined{OrderID: "o1"}).
		Then(releaseTea, releaseCup, orders.FailCheckout{OrderID: "o1", Reason: checkout.ReasonDeclined}).
		ThenDone(false)
	p := process.Define[checkout.State](checkout.New(cfg))
	fired := process.DeadlineFired{Name: checkout.PaymentDeadline}
	refused := process.CommandRejected{Command: orders.VoidPayment{OrderID: "o1", Reason: checkout.ReasonTimedOut},
		Err: &cqrs.RejectedError{Err: orders.ErrPaymentSettled}}
	captured := event(orders.PaymentCaptured{OrderID: "o1", AmountCents: 2100})
	out := steps(t, p, event(started), event(reservedTea), event(reservedCup), fired, captured, refused)
	if len(out.Commands) != 0 || !out.Done {
		t.Errorf("void refused after the capture: commands %v, done %v; want none, done", out.Commands, out.Done)
	}
	out = steps(t, p, event(started), event(reservedTea), event(reservedCup), fired, refused, captured)
	if want := []any{orders.CompleteCheckout{OrderID: "o1", AmountCents: 2100}}; !sameCommands(out.Commands, want) || !out.Done {
		t.Errorf("capture after the void's refusal: commands %+v, done %v; want %+v, done", out.Commands, out.Done, want)
	}
}

func TestDuplicateEventsChangeNothing(t *testing.T) {
	t.Parallel()
	scenario(t).Given(started).When(started).Then().ThenDone(false)
	scenario(t).Given(started, reservedTea).When(reservedTea).Then().ThenDone(false)
	scenario(t).Given(started, reservedTea, reservedCup).When(reservedCup).Then().ThenDeadlines().ThenDone(false)
	scenario(t).Given(started, reservedTea, reservedCup).When(orders.PaymentVoided{OrderID: "o1"}).Then().ThenDone(false)
	// A refusal of a line already answered.
	scenario(t).Given(started, reservedTea).
		WhenRejected(orders.ReserveStock{ProductID: "tea", OrderID: "o1", Quantity: 2}, outOfStock).Then().ThenDone(false)
}

func TestUnexpectedRefusalFailsTheInstance(t *testing.T) {
	t.Parallel()
	scenario(t).Given(started, reservedTea, reservedCup).
		WhenRejected(orders.RequestPayment{OrderID: "o1"}, &cqrs.RejectedError{Err: errors.New("boom")}).
		ThenError(cqrs.ErrRejected)
}

func TestGateway(t *testing.T) {
	t.Parallel()
	gw := func() *processtest.Scenario[checkout.GatewayState] {
		return processtest.For(t, checkout.NewGateway(cfg))
	}
	gw().When(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardOK}).
		Then(orders.CapturePayment{OrderID: "o1"}).ThenDone(false)
	gw().When(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardDecline}).
		Then(orders.DeclinePayment{OrderID: "o1", Reason: "card declined"}).ThenDone(false)
	gw().When(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardSlow}).
		Then().ThenDeadlines(process.Deadline{Name: "answer", After: 2 * time.Minute}).ThenDone(false)
	// Slow answers after the checkout's deadline.
	gw().Given(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardSlow}).
		WhenElapsed(2 * time.Minute).
		Then(orders.CapturePayment{OrderID: "o1"}).ThenDone(false)
	// The answer on the payment ends the instance.
	gw().Given(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardOK}).
		When(orders.PaymentCaptured{OrderID: "o1", AmountCents: 10}).Then().ThenDone(true)
	gw().Given(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardDecline}).
		When(orders.PaymentDeclined{OrderID: "o1", Reason: "card declined"}).Then().ThenDone(true)
	// A late answer refused because the checkout voided the payment ends it
	// too: that refusal is expected, not left for an operator.
	late := gw().Given(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardSlow}).
		WhenRejected(orders.CapturePayment{OrderID: "o1"}, fmt.Errorf("capture: %w", orders.ErrPaymentSettled)).
		Then().ThenDone(true)
	if !late.State().Refused {
		t.Errorf("state after a refused late capture: %+v; want Refused", late.State())
	}
	// Any other refusal fails the instance.
	gw().Given(orders.PaymentRequested{OrderID: "o1", AmountCents: 10, Card: orders.CardOK}).
		WhenRejected(orders.CapturePayment{OrderID: "o1"}, orders.ErrNoCheckout).
		ThenError(orders.ErrNoCheckout)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := checkout.Config{PaymentTimeout: -1, SlowAnswer: -2}.Validate()
	if err == nil || !strings.Contains(err.Error(), "PaymentTimeout is -1ns") || !strings.Contains(err.Error(), "SlowAnswer is -2ns") {
		t.Errorf("Validate: %v; want both fields named", err)
	}
	if err := (checkout.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func event(data any) process.Input {
	return process.EventReceived{Event: projections.Event{Data: data}}
}

// steps runs p on ins from a new instance and returns the last outcome.
func steps(t *testing.T, p process.Process, ins ...process.Input) process.Outcome {
	t.Helper()
	var state []byte
	var out process.Outcome
	for _, in := range ins {
		var err error
		if out, err = p.Step(state, in); err != nil {
			t.Fatalf("step %T: %v", in, err)
		}
		state = out.State
	}
	return out
}

func sameCommands(got, want []any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if fmt.Sprintf("%#v", got[i]) != fmt.Sprintf("%#v", want[i]) {
			return false
		}
	}
	return true
}
