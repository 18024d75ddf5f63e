package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stratadev/strata/projections"
)

// Manager is a process manager whose instances keep a state of type S. The
// runtime calls its methods; Decide must be pure: it sees only its
// arguments, and calling it again with the same ones decides the same.
type Manager[S any] interface {
	// Name identifies the process manager, its checkpoint and its rows. It
	// must be stable across deployments.
	Name() string
	// Handles lists the event types the process manager reacts to, as
	// registered in the worker's es.Registry.
	Handles() []string
	// Correlate returns the ID of the process instance an event belongs
	// to, such as an order ID. ok=false means the event belongs to no
	// process: it is skipped and counted.
	Correlate(ev projections.Event) (id string, ok bool)
	// Decide returns what the instance does on in, given its state: the
	// zero S for an instance that has not decided anything yet.
	Decide(state S, in Input) (Decision[S], error)
}

// Input is what an instance reacts to: an [EventReceived], a
// [DeadlineFired] or a [CommandRejected].
type Input interface{ input() }

// EventReceived is an event of the log that correlated to the instance.
type EventReceived struct {
	Event projections.Event
}

// DeadlineFired is a deadline of the instance that came due and was not
// cancelled. Due is when it was due, on the database's clock.
type DeadlineFired struct {
	Name string
	Due  time.Time
}

// CommandRejected is a command the instance decided that the bus refused
// for good (see [Permanent]): the domain rejected it, or it was invalid.
// Err is the bus's error, so errors.Is(in.Err, cqrs.ErrRejected) and
// errors.As work.
type CommandRejected struct {
	Command any
	Err     error
}

func (EventReceived) input()   {}
func (DeadlineFired) input()   {}
func (CommandRejected) input() {}

// Decision is what an instance decided on one input.
type Decision[S any] struct {
	// State is the instance's new state. It is stored as JSON.
	State S
	// Commands are sent on the bus, each once in effect, with an ID derived
	// from the process, the instance, the decision's step and the
	// command's index (see [CommandIDFor]). Their types must be registered
	// in the runtime's [Commands]. No order between them is guaranteed.
	Commands []any
	// Deadlines are set: each fires once, as a [DeadlineFired], unless it
	// is cancelled first. Setting a deadline of a name that is pending
	// replaces it.
	Deadlines []Deadline
	// Cancel names pending deadlines that must never fire.
	Cancel []string
	// Done completes the instance: later events and deadlines for it are
	// not handed to Decide. The commands of this decision are still sent.
	Done bool
}

// Deadline asks for a [DeadlineFired] input at a time: After the decision
// (measured on the database's clock, so that the clocks of the workers do
// not matter), or At a point in time. Exactly one of After and At is set.
type Deadline struct {
	Name  string
	After time.Duration
	At    time.Time
}

// Validate reports every problem with d at once.
func (d Deadline) Validate() error {
	var errs []error
	if d.Name == "" {
		errs = append(errs, errors.New("process: deadline: Name is empty"))
	}
	if d.After < 0 {
		errs = append(errs, fmt.Errorf("process: deadline %q: After is %v; want 0 or more", d.Name, d.After))
	}
	if d.After != 0 && !d.At.IsZero() {
		errs = append(errs, fmt.Errorf("process: deadline %q: both After and At are set; want one", d.Name))
	}
	return errors.Join(errs...)
}

// Outcome is a [Decision] with the state encoded as JSON, as [Process]
// returns it to a runtime.
type Outcome struct {
	State     json.RawMessage
	Commands  []any
	Deadlines []Deadline
	Cancel    []string
	Done      bool
}

// Process is a [Manager] seen by a runtime: its state is JSON. Make one
// with [Define].
type Process interface {
	Name() string
	Handles() []string
	Correlate(ev projections.Event) (id string, ok bool)
	// Step decodes state (nil for a new instance), decides on in and
	// encodes the new state. A state that does not decode returns a
	// [*StateError]; an error of Decide is returned wrapped.
	Step(state []byte, in Input) (Outcome, error)
}

// Define returns m as a [Process].
func Define[S any](m Manager[S]) Process { return managed[S]{m} }

type managed[S any] struct{ Manager[S] }

func (m managed[S]) Step(state []byte, in Input) (Outcome, error) {
	var s S
	if len(state) > 0 {
		if err := json.Unmarshal(state, &s); err != nil {
			return Outcome{}, &StateError{Process: m.Name(), Err: err}
		}
	}
	d, err := m.Decide(s, in)
	if err != nil {
		return Outcome{}, fmt.Errorf("process: %s: decide: %w", m.Name(), err)
	}
	for _, dl := range d.Deadlines {
		if err := dl.Validate(); err != nil {
			return Outcome{}, fmt.Errorf("process: %s: decide: %w", m.Name(), err)
		}
	}
	b, err := json.Marshal(d.State)
	if err != nil {
		return Outcome{}, fmt.Errorf("process: %s: encode state: %w", m.Name(), err)
	}
	return Outcome{State: b, Commands: d.Commands, Deadlines: d.Deadlines, Cancel: d.Cancel, Done: d.Done}, nil
}
