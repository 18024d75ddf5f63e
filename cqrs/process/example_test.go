package process_test

import (
	"fmt"
	"time"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/projections"
)

type OrderPlaced struct{ OrderID string }

type CapturePayment struct {
	process.ID
	OrderID string
}

type CancelOrder struct {
	process.ID
	OrderID string
}

type paymentState struct {
	OrderID string
	Asked   bool // the payment was asked for
}

// payments asks for the payment of each placed order, and cancels the
// order when no payment came within 15 minutes.
type payments struct{}

func (payments) Name() string      { return "payments" }
func (payments) Handles() []string { return []string{"OrderPlaced"} }
func (payments) Correlate(ev projections.Event) (string, bool) {
	if e, ok := ev.Data.(OrderPlaced); ok {
		return e.OrderID, true
	}
	return "", false
}

func (payments) Decide(s paymentState, in process.Input) (process.Decision[paymentState], error) {
	switch in := in.(type) {
	case process.EventReceived:
		e := in.Event.Data.(OrderPlaced)
		return process.Decision[paymentState]{
			State:     paymentState{OrderID: e.OrderID, Asked: true},
			Commands:  []any{CapturePayment{OrderID: e.OrderID}},
			Deadlines: []process.Deadline{{Name: "payment", After: 15 * time.Minute}},
		}, nil
	case process.DeadlineFired:
		return process.Decision[paymentState]{State: s, Commands: []any{CancelOrder{OrderID: s.OrderID}}, Done: true}, nil
	}
	return process.Decision[paymentState]{State: s}, nil
}

func Example() {
	p := process.Define[paymentState](payments{})
	out, err := p.Step(nil, process.EventReceived{Event: projections.Event{Data: OrderPlaced{OrderID: "42"}}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("state %s, commands %+v, deadlines %+v\n", out.State, out.Commands, out.Deadlines)
	out, err = p.Step(out.State, process.DeadlineFired{Name: "payment"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("commands %+v, done %v\n", out.Commands, out.Done)
	fmt.Println(process.CommandIDFor("payments", "42", 2, 0))
	// Output:
	// state {"OrderID":"42","Asked":true}, commands [{ID:{Value:} OrderID:42}], deadlines [{Name:payment After:15m0s At:0001-01-01 00:00:00 +0000 UTC}]
	// commands [{ID:{Value:} OrderID:42}], done true
	// payments/42/2/0
}
