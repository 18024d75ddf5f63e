package process_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/projections"
)

type Ship struct {
	process.ID
	OrderID string
}

type counter struct{ fail error }

func (counter) Name() string                               { return "counter" }
func (counter) Handles() []string                          { return []string{"Tick"} }
func (counter) Correlate(projections.Event) (string, bool) { return "c", true }
func (c counter) Decide(n int, in process.Input) (process.Decision[int], error) {
	if c.fail != nil {
		return process.Decision[int]{}, c.fail
	}
	if _, ok := in.(process.DeadlineFired); ok {
		return process.Decision[int]{State: n, Deadlines: []process.Deadline{{Name: "bad", After: time.Second, At: time.Now()}}}, nil
	}
	return process.Decision[int]{State: n + 1, Commands: []any{Ship{OrderID: "7"}}}, nil
}

func TestStepKeepsStateAsJSON(t *testing.T) {
	t.Parallel()
	p := process.Define[int](counter{})
	out, err := p.Step(nil, process.EventReceived{})
	if err != nil || string(out.State) != "1" {
		t.Fatalf("first step: state %s, err %v; want 1, nil", out.State, err)
	}
	out, err = p.Step(out.State, process.EventReceived{})
	if err != nil || string(out.State) != "2" {
		t.Errorf("second step: state %s, err %v; want 2, nil", out.State, err)
	}
}

func TestStepErrors(t *testing.T) {
	t.Parallel()
	_, err := process.Define[int](counter{}).Step([]byte(`"x"`), process.EventReceived{})
	var se *process.StateError
	if !errors.Is(err, process.ErrState) || !errors.As(err, &se) || se.Process != "counter" {
		t.Errorf("undecodable state: err %v; want a *StateError of counter that is ErrState", err)
	}
	boom := errors.New("boom")
	if _, err := process.Define[int](counter{fail: boom}).Step(nil, process.EventReceived{}); !errors.Is(err, boom) {
		t.Errorf("decide error: err %v; want it wrapped", err)
	}
	if _, err := process.Define[int](counter{}).Step(nil, process.DeadlineFired{}); err == nil {
		t.Error("a deadline with both After and At: err nil; want an error")
	}
}

func TestCommandIDFor(t *testing.T) {
	t.Parallel()
	if got, want := process.CommandIDFor("checkout", "42", 3, 1), "checkout/42/3/1"; got != want {
		t.Errorf("CommandIDFor is %q; want %q", got, want)
	}
	// A "/" in a name must not make two commands share an ID.
	if a, b := process.CommandIDFor("a/b", "c", 1, 0), process.CommandIDFor("a", "b/c", 1, 0); a == b {
		t.Errorf("CommandIDFor gives %q for two different instances", a)
	}
}

func TestCommandsRoundTrip(t *testing.T) {
	t.Parallel()
	cmds := &process.Commands{}
	process.RegisterCommand[Ship](cmds)
	name, err := cmds.Name(Ship{OrderID: "7"})
	if err != nil || name != cqrs.CommandName(Ship{}) {
		t.Fatalf("Name is %q, %v; want %q", name, err, cqrs.CommandName(Ship{}))
	}
	got, err := cmds.Decode(name, []byte(`{"OrderID":"7"}`), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Ship{ID: process.ID{Value: "id-1"}, OrderID: "7"}); got != want {
		t.Errorf("decoded %#v; want %#v", got, want)
	}
	if id := got.(cqrs.Identified).CommandID(); id != "id-1" {
		t.Errorf("CommandID is %q; want id-1", id)
	}
	if _, err := cmds.Name(struct{ X int }{}); !errors.Is(err, process.ErrUnregisteredCommand) {
		t.Errorf("unregistered type: err %v; want ErrUnregisteredCommand", err)
	}
}

func TestRegisterCommandWithoutIDPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("RegisterCommand of a type without an ID did not panic")
		}
	}()
	process.RegisterCommand[struct{ X int }](&process.Commands{})
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		&cqrs.RejectedError{Err: errors.New("no")}: true,
		cqrs.ErrInvalidCommand:                     true,
		cqrs.ErrAggregateNotFound:                  true,
		errors.New("connection reset"):             false,
		cqrs.ErrHandlerPanic:                       false,
	} {
		if got := process.Permanent(err); got != want {
			t.Errorf("Permanent(%v) is %v; want %v", err, got, want)
		}
	}
}
