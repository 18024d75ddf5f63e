// Package cqrstest tests the deciders of the cqrs package with
// given/when/then scenarios:
//
//	func TestAddItem(t *testing.T) {
//		cqrstest.For(t, order.Registry(), order.New, order.AddItem).
//			Given(order.Placed{ID: "42"}).
//			When(order.AddItemCommand{OrderID: "42", SKU: "tea", Quantity: 2}).
//			Then(order.ItemAdded{OrderID: "42", SKU: "tea", Quantity: 2})
//	}
//
// A scenario runs the same path as production: the given events are stored
// in an in-memory store (es/memstore), and the command is dispatched through
// a [cqrs.Bus] to the handler [cqrs.Aggregate] makes of the decider, so
// validation, the decider's intent ([cqrs.OnNew], [cqrs.OnExisting],
// [cqrs.OnAny]), the event registry and the aggregate's Apply method all
// take part. A failure shows the given events, the command, and the expected
// and actual events, each as its registered type name and its JSON.
//
// A [Sequence] dispatches several commands in a row on one store, each seeing
// what the ones before it appended, and checks each step and, with
// [Sequence.ThenAll], all of them together:
//
//	cqrstest.NewSequence(t, order.Registry(), order.New,
//		cqrstest.Decides(order.Place), cqrstest.Decides(order.AddItem)).
//		When(order.PlaceCommand{OrderID: "42"}).Then(order.Placed{ID: "42"}).
//		When(order.AddItemCommand{OrderID: "42", SKU: "tea", Quantity: 2}).
//		Then(order.ItemAdded{OrderID: "42", SKU: "tea", Quantity: 2})
package cqrstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
)

// Scenario is one given/when/then test of a decider. Make it with [For],
// then call Given (optional), When, and one of Then, ThenError or
// ThenErrorAs.
type Scenario[C any, T es.Aggregate] struct {
	t        testing.TB
	registry *es.Registry
	newAgg   func(id string) T
	decider  cqrs.Decider[C, T]

	given []any
	cmd   C
	ran   bool
	got   []any       // the events the command appended
	res   cqrs.Result // the command's result
	err   error       // the command's error
}

// For starts a scenario for decider d on aggregates made by newAggregate,
// whose events are registered in registry.
func For[C any, T es.Aggregate](t testing.TB, registry *es.Registry, newAggregate func(id string) T, d cqrs.Decider[C, T]) *Scenario[C, T] {
	t.Helper()
	if registry == nil || newAggregate == nil {
		t.Fatalf("cqrstest: For: nil registry or aggregate constructor")
	}
	return &Scenario[C, T]{t: t, registry: registry, newAgg: newAggregate, decider: d}
}

// Given sets the events already stored for the aggregate the command names.
// Without Given, the aggregate does not exist.
func (s *Scenario[C, T]) Given(events ...any) *Scenario[C, T] {
	s.t.Helper()
	if s.ran {
		s.t.Fatalf("cqrstest: Given after When")
		return s
	}
	s.given = append(s.given, events...)
	return s
}

// When stores the given events and dispatches cmd.
func (s *Scenario[C, T]) When(cmd C) *Scenario[C, T] {
	s.t.Helper()
	return s.when(cmd, false)
}

// WhenRetried is [Scenario.When] followed by a retry of the same command,
// as a client that never saw the first answer sends it again. The retry
// must return the first dispatch's [cqrs.Result] (or fail as it did) and
// append nothing, or the scenario fails: that holds for a command with an
// ID (see [cqrs.Identified]) and not for one without. Then and its kin
// check what the first dispatch did.
func (s *Scenario[C, T]) WhenRetried(cmd C) *Scenario[C, T] {
	s.t.Helper()
	return s.when(cmd, true)
}

// Result returns the [cqrs.Result] the command's dispatch returned.
func (s *Scenario[C, T]) Result() cqrs.Result {
	s.t.Helper()
	s.mustHaveRun("Result")
	return s.res
}

func (s *Scenario[C, T]) when(cmd C, retry bool) *Scenario[C, T] {
	s.t.Helper()
	if s.ran {
		s.t.Fatalf("cqrstest: When called twice")
		return s
	}
	s.ran, s.cmd = true, cmd
	ctx := context.Background()
	store := memstore.New()
	repo := es.NewRepository(store, s.registry, s.newAgg, es.RepositoryConfig{})
	stream := repo.StreamFor(s.decider.AggregateID(cmd))

	if len(s.given) > 0 {
		data := make([]es.EventData, len(s.given))
		for i, e := range s.given {
			d, err := s.registry.Encode(e, nil)
			if err != nil {
				s.t.Fatalf("cqrstest: given event %d (%T): %v", i, e, err)
				return s
			}
			data[i] = d
		}
		if _, err := store.Append(ctx, stream, es.NoStream, data...); err != nil {
			s.t.Fatalf("cqrstest: store the given events: %v", err)
			return s
		}
	}

	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(repo, s.decider, cqrs.AggregateConfig{MaxAttempts: 1}))
	s.res, s.err = bus.Dispatch(ctx, cmd)
	if retry {
		before, _ := store.ReadStream(ctx, stream, es.ReadStreamOptions{})
		res, err := bus.Dispatch(ctx, cmd)
		after, _ := store.ReadStream(ctx, stream, es.ReadStreamOptions{})
		switch {
		case (err == nil) != (s.err == nil):
			s.t.Errorf("cqrstest: the retry of %T returned error %v; the first dispatch returned %v", cmd, err, s.err)
		case err == nil && res != s.res:
			s.t.Errorf("cqrstest: the retry of %T returned %+v; want the first dispatch's %+v", cmd, res, s.res)
		}
		if len(after) != len(before) {
			s.t.Errorf("cqrstest: the retry of %T appended %d more events; a retried command must append nothing (does it have an ID?)", cmd, len(after)-len(before))
		}
	}

	recs, err := store.ReadStream(ctx, stream, es.ReadStreamOptions{From: int64(len(s.given)) + 1})
	if err != nil && !errors.Is(err, es.ErrStreamNotFound) {
		s.t.Fatalf("cqrstest: read the appended events: %v", err)
		return s
	}
	for _, rec := range recs {
		e, err := s.registry.Decode(rec)
		if err != nil {
			s.t.Fatalf("cqrstest: decode appended event %d: %v", rec.Version, err)
			return s
		}
		s.got = append(s.got, e)
	}
	return s
}

// Then checks that the command succeeded and appended exactly events, in
// order. Events are compared by registered type name and JSON. Then with no
// events expects the command to append nothing.
func (s *Scenario[C, T]) Then(events ...any) {
	s.t.Helper()
	if !s.mustHaveRun("Then") {
		return
	}
	want, got := s.render(events), s.render(s.got)
	switch {
	case s.err != nil:
		s.t.Errorf("%s\n%s\ngot error:\n    %v", s.header("want events, got an error"), list("want", want), s.err)
	case !slices.Equal(want, got):
		s.t.Errorf("%s\n%s\n%s", s.header("events differ"), list("want", want), list("got", got))
	}
}

// ThenError checks that the command failed with an error that matches target
// (errors.Is) and appended nothing.
func (s *Scenario[C, T]) ThenError(target error) {
	s.t.Helper()
	if !s.mustHaveRun("ThenError") {
		return
	}
	if s.checkFailed(fmt.Sprintf("an error matching %q", target)) && !errors.Is(s.err, target) {
		s.t.Errorf("%s\n    %v\ngot error:\n    %v", s.header("wrong error"), target, s.err)
	}
}

// ThenErrorAs checks that the command failed with an error that errors.As
// finds in target, a non-nil pointer to an error type, and appended nothing.
// target is then set for further checks.
func (s *Scenario[C, T]) ThenErrorAs(target any) {
	s.t.Helper()
	if !s.mustHaveRun("ThenErrorAs") {
		return
	}
	name := reflect.TypeOf(target).Elem().String()
	if s.checkFailed("an error of type "+name) && !errors.As(s.err, target) {
		s.t.Errorf("%s\n    %s\ngot error:\n    %v", s.header("wrong error type"), name, s.err)
	}
}

// checkFailed reports whether the command failed, and otherwise reports
// that want was expected. It also reports events appended with an error.
func (s *Scenario[C, T]) checkFailed(want string) bool {
	s.t.Helper()
	if s.err == nil {
		s.t.Errorf("%s\n    %s\n%s", s.header("want an error, got success"), want, list("got", s.render(s.got)))
		return false
	}
	if len(s.got) > 0 {
		s.t.Errorf("%s\n%s", s.header("the command failed but appended events"), list("got", s.render(s.got)))
	}
	return true
}

func (s *Scenario[C, T]) mustHaveRun(method string) bool {
	s.t.Helper()
	if !s.ran {
		s.t.Fatalf("cqrstest: %s before When", method)
	}
	return s.ran
}

// header describes the scenario for a failure message.
func (s *Scenario[C, T]) header(problem string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cqrstest: %s: %s\n", cqrs.CommandName(s.cmd), problem)
	b.WriteString(list("given", s.render(s.given)))
	b.WriteString("\nwhen:\n    ")
	b.WriteString(cqrs.CommandName(s.cmd) + " " + toJSON(s.cmd))
	return b.String()
}

// render shows each event as its registered type name and its JSON.
func (s *Scenario[C, T]) render(events []any) []string {
	return renderEvents(s.registry, events)
}

func renderEvents(registry *es.Registry, events []any) []string {
	out := make([]string, len(events))
	for i, e := range events {
		name, err := registry.TypeName(e)
		if err != nil {
			name = fmt.Sprintf("%T (not registered)", e)
		}
		out[i] = name + " " + toJSON(e)
	}
	return out
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v (no JSON: %v)", v, err)
	}
	return string(b)
}

func list(title string, lines []string) string {
	if len(lines) == 0 {
		return title + ": (no events)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", title)
	for i, l := range lines {
		fmt.Fprintf(&b, "\n    [%d] %s", i, l)
	}
	return b.String()
}
