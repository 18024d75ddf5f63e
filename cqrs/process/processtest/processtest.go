// Package processtest tests process managers (see [process.Manager]) with
// given/when/then scenarios, without a database or a clock:
//
//	func TestPaymentTimeout(t *testing.T) {
//		processtest.For(t, orderProcess{}).
//			Given(OrderPlaced{ID: "42"}, StockReserved{OrderID: "42"}).
//			WhenElapsed(15 * time.Minute).
//			Then(ReleaseStock{OrderID: "42"}, CancelOrder{OrderID: "42"})
//	}
//
// A scenario keeps the instance's state as the runtime does (as JSON, so a
// state that does not survive encoding fails here too) and its pending
// deadlines on a fake clock that starts at [Start]. Given events, and
// deadlines that come due while time elapses ([Scenario.Elapsed]), are
// decided in order; then the When step's decisions are checked. Commands
// are compared by type and JSON, without their IDs.
package processtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Start is the time on a scenario's clock before anything elapses.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type pending struct {
	name string
	due  time.Time
}

// Scenario is one given/when/then test of a process manager. Make it with
// [For]; call Given and Elapsed (optional), one When, then any of Then,
// ThenDeadlines, ThenCancelled, ThenDone and ThenError. The When steps are
// When (an event), WhenElapsed (time passes, due deadlines fire),
// WhenDeadline (one pending deadline fires) and WhenRejected (the bus
// refused a command).
type Scenario[S any] struct {
	t       testing.TB
	m       process.Manager[S]
	p       process.Process
	state   []byte
	done    bool
	now     time.Time
	pending []pending
	seq     int64 // of the given events

	ran bool
	out []process.Outcome // of the When step
	err error
}

// For starts a scenario of m.
func For[S any](t testing.TB, m process.Manager[S]) *Scenario[S] {
	t.Helper()
	return &Scenario[S]{t: t, m: m, p: process.Define(m), now: Start}
}

// Given decides on events in order, as [process.EventReceived] inputs; what
// they decide is history. An event of a type the manager does not handle,
// or that does not correlate, fails the test.
func (s *Scenario[S]) Given(events ...any) *Scenario[S] {
	s.t.Helper()
	for _, ev := range events {
		if _, err := s.step(s.event(ev)); err != nil {
			s.t.Fatalf("processtest: given %T: %v", ev, err)
		}
	}
	return s
}

// Elapsed moves the clock by d, firing the deadlines that come due, in due
// order, as history.
func (s *Scenario[S]) Elapsed(d time.Duration) *Scenario[S] {
	s.t.Helper()
	if _, err := s.elapse(d); err != nil {
		s.t.Fatalf("processtest: elapsed %v: %v", d, err)
	}
	return s
}

// When decides on an event.
func (s *Scenario[S]) When(event any) *Scenario[S] {
	s.t.Helper()
	return s.when(func() ([]process.Outcome, error) {
		o, err := s.step(s.event(event))
		return []process.Outcome{o}, err
	})
}

// WhenElapsed moves the clock by d; the deadlines that come due are the
// When step. Then fails if none did.
func (s *Scenario[S]) WhenElapsed(d time.Duration) *Scenario[S] {
	s.t.Helper()
	return s.when(func() ([]process.Outcome, error) {
		out, err := s.elapse(d)
		if err == nil && len(out) == 0 {
			err = fmt.Errorf("processtest: no deadline came due in %v; pending: %s", d, s.pendingList())
		}
		return out, err
	})
}

// WhenDeadline fires the pending deadline name now, moving the clock to
// its due time if that is later. Then fails if no such deadline is
// pending (it was never set, was cancelled, or fired already).
func (s *Scenario[S]) WhenDeadline(name string) *Scenario[S] {
	s.t.Helper()
	return s.when(func() ([]process.Outcome, error) {
		i := slices.IndexFunc(s.pending, func(p pending) bool { return p.name == name })
		if i < 0 {
			return nil, fmt.Errorf("processtest: deadline %q is not pending; pending: %s", name, s.pendingList())
		}
		p := s.pending[i]
		s.pending = slices.Delete(s.pending, i, i+1)
		if p.due.After(s.now) {
			s.now = p.due
		}
		o, err := s.step(process.DeadlineFired{Name: p.name, Due: p.due})
		return []process.Outcome{o}, err
	})
}

// WhenRejected decides on a [process.CommandRejected] of cmd with err.
func (s *Scenario[S]) WhenRejected(cmd any, err error) *Scenario[S] {
	s.t.Helper()
	return s.when(func() ([]process.Outcome, error) {
		o, err := s.step(process.CommandRejected{Command: cmd, Err: err})
		return []process.Outcome{o}, err
	})
}

func (s *Scenario[S]) when(run func() ([]process.Outcome, error)) *Scenario[S] {
	s.t.Helper()
	if s.ran {
		s.t.Fatal("processtest: When called twice in one scenario")
	}
	s.ran = true
	s.out, s.err = run()
	return s
}

func (s *Scenario[S]) event(data any) process.Input {
	s.seq++
	name := reflect.TypeOf(data).Name()
	return process.EventReceived{Event: projections.Event{Data: data, Record: es.Record{
		Type: name, Stream: "processtest", Version: s.seq,
		Position: es.Position{Commit: uint64(s.seq), Prepare: uint64(s.seq)}, RecordedAt: s.now,
	}}}
}

func (s *Scenario[S]) step(in process.Input) (process.Outcome, error) {
	if s.done {
		return process.Outcome{}, fmt.Errorf("processtest: the process is done; it would not see %T", in)
	}
	if ev, ok := in.(process.EventReceived); ok {
		if _, ok := s.m.Correlate(ev.Event); !ok {
			return process.Outcome{}, fmt.Errorf("processtest: %T does not correlate to a process", ev.Event.Data)
		}
	}
	o, err := s.p.Step(s.state, in)
	if err != nil {
		return o, err
	}
	s.state, s.done = o.State, o.Done
	for _, c := range o.Cancel {
		s.pending = slices.DeleteFunc(s.pending, func(p pending) bool { return p.name == c })
	}
	for _, d := range o.Deadlines {
		s.pending = slices.DeleteFunc(s.pending, func(p pending) bool { return p.name == d.Name })
		due := d.At
		if due.IsZero() {
			due = s.now.Add(d.After)
		}
		s.pending = append(s.pending, pending{name: d.Name, due: due})
	}
	sort.SliceStable(s.pending, func(i, j int) bool { return s.pending[i].due.Before(s.pending[j].due) })
	return o, nil
}

func (s *Scenario[S]) elapse(d time.Duration) ([]process.Outcome, error) {
	until := s.now.Add(d)
	var out []process.Outcome
	for len(s.pending) > 0 && !s.pending[0].due.After(until) && !s.done {
		p := s.pending[0]
		s.pending = s.pending[1:]
		s.now = p.due
		o, err := s.step(process.DeadlineFired{Name: p.name, Due: p.due})
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	s.now = until
	return out, nil
}

func (s *Scenario[S]) pendingList() string {
	var b strings.Builder
	for i, p := range s.pending {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s at +%v", p.name, p.due.Sub(Start))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func (s *Scenario[S]) checked() bool {
	s.t.Helper()
	if !s.ran {
		s.t.Fatal("processtest: Then without When")
	}
	if s.err != nil {
		s.t.Errorf("processtest: When failed: %v", s.err)
		return false
	}
	return true
}

// Then checks the commands the When step decided, in order, by type and
// JSON, ignoring their IDs.
func (s *Scenario[S]) Then(commands ...any) *Scenario[S] {
	s.t.Helper()
	if !s.checked() {
		return s
	}
	var got []any
	for _, o := range s.out {
		got = append(got, o.Commands...)
	}
	g, w := render(got), render(commands)
	if !slices.Equal(g, w) {
		s.t.Errorf("processtest: commands differ\ngot:\n%s\nwant:\n%s", list(g), list(w))
	}
	return s
}

// ThenDeadlines checks the deadlines the When step set, in order.
func (s *Scenario[S]) ThenDeadlines(deadlines ...process.Deadline) *Scenario[S] {
	s.t.Helper()
	if !s.checked() {
		return s
	}
	var got []process.Deadline
	for _, o := range s.out {
		got = append(got, o.Deadlines...)
	}
	if !slices.EqualFunc(got, deadlines, func(a, b process.Deadline) bool {
		return a.Name == b.Name && a.After == b.After && a.At.Equal(b.At)
	}) {
		s.t.Errorf("processtest: deadlines differ\ngot:  %+v\nwant: %+v", got, deadlines)
	}
	return s
}

// ThenCancelled checks the deadline names the When step cancelled, in
// order.
func (s *Scenario[S]) ThenCancelled(names ...string) *Scenario[S] {
	s.t.Helper()
	if !s.checked() {
		return s
	}
	var got []string
	for _, o := range s.out {
		got = append(got, o.Cancel...)
	}
	if !slices.Equal(got, names) {
		s.t.Errorf("processtest: cancelled deadlines differ\ngot:  %q\nwant: %q", got, names)
	}
	return s
}

// ThenDone checks whether the process is done after the When step.
func (s *Scenario[S]) ThenDone(want bool) *Scenario[S] {
	s.t.Helper()
	if s.checked() && s.done != want {
		s.t.Errorf("processtest: done is %v; want %v", s.done, want)
	}
	return s
}

// ThenError checks that the When step failed with an error that
// errors.Is target.
func (s *Scenario[S]) ThenError(target error) {
	s.t.Helper()
	if !s.ran {
		s.t.Fatal("processtest: ThenError without When")
	}
	if s.err == nil || !errors.Is(s.err, target) {
		s.t.Errorf("processtest: error is %v; want %v", s.err, target)
	}
}

// State returns the instance's state after the steps so far.
func (s *Scenario[S]) State() S {
	s.t.Helper()
	var st S
	if len(s.state) > 0 {
		if err := json.Unmarshal(s.state, &st); err != nil {
			s.t.Fatalf("processtest: decode state: %v", err)
		}
	}
	return st
}

func render(cmds []any) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		v := reflect.New(reflect.TypeOf(c)).Elem()
		v.Set(reflect.ValueOf(c))
		if p, ok := v.Addr().Interface().(process.IDSetter); ok {
			p.SetCommandID("")
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			b = []byte(fmt.Sprintf("<%v>", err))
		}
		out[i] = cqrs.CommandName(c) + " " + string(b)
	}
	return out
}

func list(lines []string) string {
	if len(lines) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(lines, "\n  ")
}
