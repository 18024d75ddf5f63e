package processtest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/processtest"
	"github.com/stratadev/strata/projections"
)

type OrderPlaced struct{ OrderID string }
type PaymentCaptured struct{ OrderID string }

type CapturePayment struct {
	process.ID
	OrderID string
}
type CancelOrder struct {
	process.ID
	OrderID string
	Reason  string
}
type ConfirmOrder struct {
	process.ID
	OrderID string
}

type orderState struct {
	OrderID string
	Paid    bool
}

type orders struct{}

func (orders) Name() string      { return "orders" }
func (orders) Handles() []string { return []string{"OrderPlaced", "PaymentCaptured"} }
func (orders) Correlate(ev projections.Event) (string, bool) {
	switch e := ev.Data.(type) {
	case OrderPlaced:
		return e.OrderID, true
	case PaymentCaptured:
		return e.OrderID, true
	}
	return "", false
}

func (orders) Decide(s orderState, in process.Input) (process.Decision[orderState], error) {
	switch in := in.(type) {
	case process.EventReceived:
		switch e := in.Event.Data.(type) {
		case OrderPlaced:
			s.OrderID = e.OrderID
			return process.Decision[orderState]{State: s,
				Commands:  []any{CapturePayment{OrderID: e.OrderID}},
				Deadlines: []process.Deadline{{Name: "payment", After: time.Minute}}}, nil
		case PaymentCaptured:
			s.Paid = true
			return process.Decision[orderState]{State: s, Commands: []any{ConfirmOrder{OrderID: s.OrderID}},
				Cancel: []string{"payment"}, Done: true}, nil
		}
	case process.DeadlineFired:
		return process.Decision[orderState]{State: s, Commands: []any{CancelOrder{OrderID: s.OrderID, Reason: "timeout"}}, Done: true}, nil
	case process.CommandRejected:
		return process.Decision[orderState]{State: s, Commands: []any{CancelOrder{OrderID: s.OrderID, Reason: in.Err.Error()}}, Done: true}, nil
	}
	return process.Decision[orderState]{}, errors.New("unexpected input")
}

func TestWhenEvent(t *testing.T) {
	t.Parallel()
	processtest.For(t, orders{}).
		When(OrderPlaced{OrderID: "42"}).
		Then(CapturePayment{OrderID: "42"}).
		ThenDeadlines(process.Deadline{Name: "payment", After: time.Minute}).
		ThenDone(false)
}

func TestWhenEventCancels(t *testing.T) {
	t.Parallel()
	s := processtest.For(t, orders{}).
		Given(OrderPlaced{OrderID: "42"}).
		When(PaymentCaptured{OrderID: "42"}).
		Then(ConfirmOrder{OrderID: "42"}).
		ThenCancelled("payment").
		ThenDone(true)
	if got, want := s.State(), (orderState{OrderID: "42", Paid: true}); got != want {
		t.Errorf("state is %+v; want %+v", got, want)
	}
}

func TestWhenElapsedFiresDueDeadlines(t *testing.T) {
	t.Parallel()
	processtest.For(t, orders{}).
		Given(OrderPlaced{OrderID: "42"}).
		Elapsed(59 * time.Second).
		WhenElapsed(time.Second).
		Then(CancelOrder{OrderID: "42", Reason: "timeout"}).
		ThenDone(true)
}

func TestWhenDeadline(t *testing.T) {
	t.Parallel()
	processtest.For(t, orders{}).
		Given(OrderPlaced{OrderID: "42"}).
		WhenDeadline("payment").
		Then(CancelOrder{OrderID: "42", Reason: "timeout"})
}

func TestWhenRejected(t *testing.T) {
	t.Parallel()
	err := &cqrs.RejectedError{Command: "x", Stream: "y", Err: errors.New("declined")}
	processtest.For(t, orders{}).
		Given(OrderPlaced{OrderID: "42"}).
		WhenRejected(CapturePayment{OrderID: "42"}, err).
		Then(CancelOrder{OrderID: "42", Reason: err.Error()})
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Errorf(format string, args ...any) { r.failed = append(r.failed, format) }
func (r *recorder) Helper()                           {}

// The checks fail when what was decided differs: a scenario that cannot
// fail proves nothing.
func TestMismatchesFail(t *testing.T) {
	t.Parallel()
	cases := map[string]func(tb testing.TB){
		"commands": func(tb testing.TB) {
			processtest.For(tb, orders{}).When(OrderPlaced{OrderID: "42"}).Then(CapturePayment{OrderID: "43"})
		},
		"deadlines": func(tb testing.TB) {
			processtest.For(tb, orders{}).When(OrderPlaced{OrderID: "42"}).ThenDeadlines(process.Deadline{Name: "payment", After: 2 * time.Minute})
		},
		"cancelled": func(tb testing.TB) {
			processtest.For(tb, orders{}).When(OrderPlaced{OrderID: "42"}).ThenCancelled("payment")
		},
		"done": func(tb testing.TB) {
			processtest.For(tb, orders{}).When(OrderPlaced{OrderID: "42"}).ThenDone(true)
		},
		"cancelled deadline": func(tb testing.TB) {
			processtest.For(tb, orders{}).Given(OrderPlaced{OrderID: "42"}, PaymentCaptured{OrderID: "42"}).WhenDeadline("payment").Then()
		},
		"no deadline due": func(tb testing.TB) {
			processtest.For(tb, orders{}).Given(OrderPlaced{OrderID: "42"}).WhenElapsed(time.Second).Then()
		},
	}
	for name, run := range cases {
		r := &recorder{TB: t}
		run(r)
		if len(r.failed) == 0 {
			t.Errorf("%s: a mismatch did not fail the scenario", name)
		}
	}
}
