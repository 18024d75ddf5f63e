package cqrstest

import (
	"context"
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

// Sequence tests several commands dispatched one after another on the same
// store: each sees what the ones before it appended. Make it with
// [NewSequence], naming every decider its commands need with [Decides], then
// call Given (optional, once), and for each command When followed by Then,
// ThenError or ThenErrorAs for that step; [Sequence.ThenAll] checks every
// event the steps appended, in order:
//
//	cqrstest.NewSequence(t, registry, NewAccount, cqrstest.Decides(open), cqrstest.Decides(deposit)).
//		When(OpenAccount{ID: "7"}).Then(AccountOpened{ID: "7"}).
//		When(Deposit{ID: "7", Amount: 5}).Then(Deposited{ID: "7", Amount: 5}).
//		When(Deposit{ID: "7", Amount: 5000}).ThenError(ErrLimit).
//		ThenAll(AccountOpened{ID: "7"}, Deposited{ID: "7", Amount: 5})
//
// A step that fails must be checked with ThenError or ThenErrorAs before the
// next When or ThenAll, or the sequence fails: a setup step that failed
// unnoticed would make the later steps test something else. Failures name
// the step and show the commands of the steps before it.
type Sequence[T es.Aggregate] struct {
	t        testing.TB
	registry *es.Registry
	deciders []Decider[T]
	store    *memstore.Store
	repo     *es.Repository[T]
	bus      *cqrs.Bus

	given []any
	steps []step
}

// step is one command of a sequence and what it did.
type step struct {
	cmd     any
	res     cqrs.Result
	err     error
	got     []any // the events it appended, in log order
	checked bool  // a Then has looked at it
}

// Decider is a decider of a [Sequence], made by [Decides].
type Decider[T es.Aggregate] struct {
	cmdType reflect.Type
	id      func(cmd any) string
	handle  func(bus *cqrs.Bus, repo *es.Repository[T])
}

// Decides makes d one of a [Sequence]'s deciders: the commands of type C
// the sequence dispatches go to it.
func Decides[C any, T es.Aggregate](d cqrs.Decider[C, T]) Decider[T] {
	return Decider[T]{
		cmdType: reflect.TypeFor[C](),
		id: func(cmd any) string {
			if p, ok := cmd.(*C); ok {
				return d.AggregateID(*p)
			}
			return d.AggregateID(cmd.(C))
		},
		handle: func(bus *cqrs.Bus, repo *es.Repository[T]) {
			cqrs.Handle(bus, cqrs.Aggregate(repo, d, cqrs.AggregateConfig{MaxAttempts: 1}))
		},
	}
}

// NewSequence starts a sequence of commands on aggregates made by
// newAggregate, whose events are registered in registry, handled by
// deciders.
func NewSequence[T es.Aggregate](t testing.TB, registry *es.Registry, newAggregate func(id string) T, deciders ...Decider[T]) *Sequence[T] {
	t.Helper()
	if registry == nil || newAggregate == nil || len(deciders) == 0 {
		t.Fatalf("cqrstest: NewSequence: nil registry or aggregate constructor, or no deciders")
	}
	store := memstore.New()
	s := &Sequence[T]{t: t, registry: registry, deciders: deciders, store: store,
		repo: es.NewRepository(store, registry, newAggregate, es.RepositoryConfig{}), bus: cqrs.NewBus()}
	for _, d := range deciders {
		d.handle(s.bus, s.repo)
	}
	return s
}

// Given sets the events already stored for the aggregate the first command
// names. Without Given, no aggregate exists before the first step.
func (s *Sequence[T]) Given(events ...any) *Sequence[T] {
	s.t.Helper()
	if len(s.steps) > 0 {
		s.t.Fatalf("cqrstest: Given after When")
		return s
	}
	s.given = append(s.given, events...)
	return s
}

// When dispatches cmd as the next step, after the steps before it. The
// first step stores the given events first.
func (s *Sequence[T]) When(cmd any) *Sequence[T] {
	s.t.Helper()
	s.uncheckedFailures()
	ctx := context.Background()
	if len(s.steps) == 0 && len(s.given) > 0 {
		s.storeGiven(ctx, cmd)
	}
	before := s.head(ctx)
	res, err := s.bus.Dispatch(ctx, cmd)
	st := step{cmd: cmd, res: res, err: err}
	recs, rerr := s.store.ReadAll(ctx, before, 0)
	if rerr != nil {
		s.t.Fatalf("cqrstest: read the events of step %d: %v", len(s.steps)+1, rerr)
		return s
	}
	for _, rec := range recs {
		e, derr := s.registry.Decode(rec)
		if derr != nil {
			s.t.Fatalf("cqrstest: decode the event %s@%d of step %d: %v", rec.Stream, rec.Version, len(s.steps)+1, derr)
			return s
		}
		st.got = append(st.got, e)
	}
	s.steps = append(s.steps, st)
	return s
}

// storeGiven appends the given events to the stream of the aggregate cmd
// names.
func (s *Sequence[T]) storeGiven(ctx context.Context, cmd any) {
	s.t.Helper()
	typ := reflect.TypeOf(cmd)
	i := slices.IndexFunc(s.deciders, func(d Decider[T]) bool {
		return typ == d.cmdType || typ == reflect.PointerTo(d.cmdType)
	})
	if i < 0 {
		s.t.Fatalf("cqrstest: no decider for the first command, %T, to tell whose the given events are", cmd)
		return
	}
	data := make([]es.EventData, len(s.given))
	for i, e := range s.given {
		d, err := s.registry.Encode(e, nil)
		if err != nil {
			s.t.Fatalf("cqrstest: given event %d (%T): %v", i, e, err)
			return
		}
		data[i] = d
	}
	if _, err := s.store.Append(ctx, s.repo.StreamFor(s.deciders[i].id(cmd)), es.NoStream, data...); err != nil {
		s.t.Fatalf("cqrstest: store the given events: %v", err)
	}
}

// head returns the position of the last event stored.
func (s *Sequence[T]) head(ctx context.Context) es.Position {
	s.t.Helper()
	pos := es.Start
	for {
		recs, err := s.store.ReadAll(ctx, pos, 0)
		if err != nil {
			s.t.Fatalf("cqrstest: read the log: %v", err)
		}
		if len(recs) == 0 {
			return pos
		}
		pos = recs[len(recs)-1].Position
	}
}

// uncheckedFailures fails the sequence if a step failed and no ThenError
// or ThenErrorAs looked at it.
func (s *Sequence[T]) uncheckedFailures() {
	s.t.Helper()
	for i, st := range s.steps {
		if st.err != nil && !st.checked {
			s.t.Errorf("%s\n%s", s.header(i, "the step failed, and no ThenError or ThenErrorAs checked it"), "got error:\n    "+st.err.Error())
			s.steps[i].checked = true
		}
	}
}

// last returns the step a Then checks, marking it checked.
func (s *Sequence[T]) last(method string) (int, *step) {
	s.t.Helper()
	if len(s.steps) == 0 {
		s.t.Fatalf("cqrstest: %s before When", method)
		return -1, nil
	}
	i := len(s.steps) - 1
	s.steps[i].checked = true
	return i, &s.steps[i]
}

// Then checks that the last step's command succeeded and appended exactly
// events, in order, compared by registered type name and JSON. Then with no
// events expects the step to append nothing.
func (s *Sequence[T]) Then(events ...any) *Sequence[T] {
	s.t.Helper()
	i, st := s.last("Then")
	if st == nil {
		return s
	}
	want, got := s.render(events), s.render(st.got)
	switch {
	case st.err != nil:
		s.t.Errorf("%s\n%s\ngot error:\n    %v", s.header(i, "want events, got an error"), list("want", want), st.err)
	case !slices.Equal(want, got):
		s.t.Errorf("%s\n%s\n%s", s.header(i, "events differ"), list("want", want), list("got", got))
	}
	return s
}

// ThenError checks that the last step's command failed with an error that
// matches target (errors.Is) and appended nothing.
func (s *Sequence[T]) ThenError(target error) *Sequence[T] {
	s.t.Helper()
	i, st := s.last("ThenError")
	if st != nil && s.checkFailed(i, fmt.Sprintf("an error matching %q", target)) && !errors.Is(st.err, target) {
		s.t.Errorf("%s\n    %v\ngot error:\n    %v", s.header(i, "wrong error"), target, st.err)
	}
	return s
}

// ThenErrorAs checks that the last step's command failed with an error
// that errors.As finds in target, a non-nil pointer to an error type, and
// appended nothing. target is then set for further checks.
func (s *Sequence[T]) ThenErrorAs(target any) *Sequence[T] {
	s.t.Helper()
	i, st := s.last("ThenErrorAs")
	if st == nil {
		return s
	}
	name := reflect.TypeOf(target).Elem().String()
	if s.checkFailed(i, "an error of type "+name) && !errors.As(st.err, target) {
		s.t.Errorf("%s\n    %s\ngot error:\n    %v", s.header(i, "wrong error type"), name, st.err)
	}
	return s
}

// ThenAll checks that the steps together appended exactly events, in log
// order (the given events are not among them).
func (s *Sequence[T]) ThenAll(events ...any) {
	s.t.Helper()
	s.uncheckedFailures()
	var all []any
	for _, st := range s.steps {
		all = append(all, st.got...)
	}
	if want, got := s.render(events), s.render(all); !slices.Equal(want, got) {
		s.t.Errorf("%s\n%s\n%s", s.header(len(s.steps), "the events of all steps differ"), list("want", want), list("got", got))
	}
}

// Result returns the [cqrs.Result] of the last step's dispatch.
func (s *Sequence[T]) Result() cqrs.Result {
	s.t.Helper()
	if len(s.steps) == 0 {
		s.t.Fatalf("cqrstest: Result before When")
		return cqrs.Result{}
	}
	return s.steps[len(s.steps)-1].res
}

// checkFailed reports whether step i failed, and otherwise reports that
// want was expected. It also reports events appended with an error.
func (s *Sequence[T]) checkFailed(i int, want string) bool {
	s.t.Helper()
	st := s.steps[i]
	if st.err == nil {
		s.t.Errorf("%s\n    %s\n%s", s.header(i, "want an error, got success"), want, list("got", s.render(st.got)))
		return false
	}
	if len(st.got) > 0 {
		s.t.Errorf("%s\n%s", s.header(i, "the command failed but appended events"), list("got", s.render(st.got)))
	}
	return true
}

// header describes the sequence up to step i (counted from 0) for a
// failure message; i == len(s.steps) describes all of it.
func (s *Sequence[T]) header(i int, problem string) string {
	var b strings.Builder
	if i < len(s.steps) {
		fmt.Fprintf(&b, "cqrstest: step %d, %s: %s\n", i+1, cqrs.CommandName(s.steps[i].cmd), problem)
	} else {
		fmt.Fprintf(&b, "cqrstest: %s\n", problem)
	}
	b.WriteString(list("given", s.render(s.given)))
	b.WriteString("\nwhen:")
	for j := 0; j <= i && j < len(s.steps); j++ {
		fmt.Fprintf(&b, "\n    %d. %s %s", j+1, cqrs.CommandName(s.steps[j].cmd), toJSON(s.steps[j].cmd))
	}
	return b.String()
}

// render shows each event as its registered type name and its JSON.
func (s *Sequence[T]) render(events []any) []string {
	return renderEvents(s.registry, events)
}
