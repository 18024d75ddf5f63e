package cqrstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/cqrstest"
	"github.com/stratadev/strata/es"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A counter that can be opened, bumped while open, and closed.

type counter struct {
	Open  bool
	Value int
}

func newCounter(string) *counter { return &counter{} }

func (c *counter) Apply(event any) error {
	switch e := event.(type) {
	case Opened:
		c.Open = true
	case Bumped:
		c.Value += e.By
	case Closed:
		c.Open = false
	default:
		return fmt.Errorf("counter: unexpected event %T", event)
	}
	return nil
}

type (
	Opened struct{ ID string }
	Bumped struct {
		ID string
		By int
	}
	Closed    struct{ ID string }
	notStored struct{}
)

func registry() *es.Registry {
	r := es.NewRegistry()
	es.Register[Opened](r, "Opened")
	es.Register[Bumped](r, "Bumped")
	es.Register[Closed](r, "Closed")
	return r
}

type Open struct{ ID string }

type Bump struct {
	ID string
	By int
}

func (b Bump) Validate() error { return cqrs.Check(b.By != 0, "By", "must not be zero") }

var ErrClosed = errors.New("counter is closed")

var open = cqrs.OnNew(
	func(c Open) string { return c.ID },
	func(_ context.Context, _ *counter, c Open) ([]any, error) { return []any{Opened(c)}, nil })

var bump = cqrs.OnExisting(
	func(c Bump) string { return c.ID },
	func(_ context.Context, s *counter, c Bump) ([]any, error) {
		if !s.Open {
			return nil, ErrClosed
		}
		if c.By > 100 { // a bug: the decider appends an event it cannot apply
			return []any{notStored{}}, nil
		}
		return []any{Bumped(c)}, nil
	})

// KeyedBump is Bump with an idempotency key.
type KeyedBump struct {
	Key, ID string
	By      int
}

func (b KeyedBump) CommandID() string { return b.Key }

var keyedBump = cqrs.OnExisting(
	func(c KeyedBump) string { return c.ID },
	func(_ context.Context, s *counter, c KeyedBump) ([]any, error) {
		if !s.Open {
			return nil, ErrClosed
		}
		return []any{Bumped{ID: c.ID, By: c.By}}, nil
	})

func TestRetriedScenarios(t *testing.T) {
	t.Parallel()
	r := registry()
	s := cqrstest.For(t, r, newCounter, keyedBump).Given(Opened{ID: "c"}).WhenRetried(KeyedBump{Key: "k1", ID: "c", By: 2})
	s.Then(Bumped{ID: "c", By: 2})
	if res := s.Result(); res.Version != 2 || res.Stream == "" {
		t.Errorf("Result() = %+v; want version 2 of the counter's stream", res)
	}
	cqrstest.For(t, r, newCounter, keyedBump).Given(Opened{ID: "c"}, Closed{ID: "c"}).
		WhenRetried(KeyedBump{Key: "k1", ID: "c", By: 2}).ThenError(ErrClosed)

	// A command without an ID is applied twice: the scenario says so.
	f := run(func(t testing.TB) {
		cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).WhenRetried(Bump{ID: "c", By: 2})
	})
	want := []string{"returned {Stream:c Version:3", "want the first dispatch's {Stream:c Version:2", "appended 1 more events"}
	if got := strings.Join(f.failures, "\n"); len(f.failures) != 2 || !strings.Contains(got, want[0]) ||
		!strings.Contains(got, want[1]) || !strings.Contains(got, want[2]) {
		t.Errorf("a retried command without an ID: failures %q; want two, saying %q", f.failures, want)
	}
}

func TestPassingScenarios(t *testing.T) {
	t.Parallel()
	r := registry()
	cqrstest.For(t, r, newCounter, open).When(Open{ID: "c"}).Then(Opened{ID: "c"})
	cqrstest.For(t, r, newCounter, open).Given(Opened{ID: "c"}).When(Open{ID: "c"}).ThenError(cqrs.ErrAggregateExists)
	cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 2})
	cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}, Closed{ID: "c"}).When(Bump{ID: "c", By: 2}).ThenError(ErrClosed)
	cqrstest.For(t, r, newCounter, bump).When(Bump{ID: "c", By: 2}).ThenError(cqrs.ErrAggregateNotFound)
	cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c"}).ThenError(cqrs.ErrInvalidCommand)

	var ve *cqrs.ValidationError
	cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c"}).ThenErrorAs(&ve)
	if ve == nil || len(ve.Fields) != 1 || ve.Fields[0].Field != "By" {
		t.Fatalf("ThenErrorAs did not set its target: %+v", ve)
	}
}

// fakeTB records failures. Fatalf ends the goroutine, as testing.T's does.
type fakeTB struct {
	testing.TB
	failures []string
	fatal    bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
	runtime.Goexit()
}

// run runs a scenario against a fakeTB and returns it when done.
func run(scenario func(t testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		scenario(f)
	}()
	<-done
	return f
}

func TestFailingScenarios(t *testing.T) {
	t.Parallel()
	r := registry()
	cases := []struct {
		name     string
		scenario func(t testing.TB)
		fatal    bool
		want     []string // substrings of the one failure message
	}{
		{"wrong event", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 3})
		}, false, []string{"events differ", "want:\n    [0] Bumped {\"ID\":\"c\",\"By\":3}", "got:\n    [0] Bumped {\"ID\":\"c\",\"By\":2}"}},
		{"missing event", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c", By: 2}).Then()
		}, false, []string{"events differ", "want: (no events)"}},
		{"error instead of events", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 2})
		}, false, []string{"want events, got an error", "aggregate c not found"}},
		{"success instead of error", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, open).When(Open{ID: "c"}).ThenError(ErrClosed)
		}, false, []string{"want an error, got success", `[0] Opened {"ID":"c"}`}},
		{"wrong error", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).When(Bump{ID: "c", By: 1}).ThenError(ErrClosed)
		}, false, []string{"wrong error", "counter is closed", "not found"}},
		{"wrong error type", func(t testing.TB) {
			var ce *cqrs.ConflictError
			cqrstest.For(t, r, newCounter, bump).When(Bump{ID: "c", By: 1}).ThenErrorAs(&ce)
		}, false, []string{"wrong error type", "*cqrs.ConflictError"}},
		{"unregistered event decided", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).Given(Opened{ID: "c"}).When(Bump{ID: "c", By: 101}).Then(notStored{})
		}, false, []string{"want events, got an error", "cqrstest_test.notStored (not registered) {}", "not registered"}},
		{"unregistered given event", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).Given(notStored{}).When(Bump{ID: "c", By: 1}).Then()
		}, true, []string{"given event 0 (cqrstest_test.notStored)"}},
		{"then before when", func(t testing.TB) {
			cqrstest.For(t, r, newCounter, bump).Then()
		}, true, []string{"Then before When"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := run(tc.scenario)
			if len(f.failures) != 1 || f.fatal != tc.fatal {
				t.Fatalf("failures (fatal %v): %q; want one, fatal %v", f.fatal, f.failures, tc.fatal)
			}
			for _, w := range tc.want {
				if !strings.Contains(f.failures[0], w) {
					t.Errorf("failure message lacks %q:\n%s", w, f.failures[0])
				}
			}
		})
	}
}

// TestFailureMessage pins the whole layout of a failure.
func TestFailureMessage(t *testing.T) {
	t.Parallel()
	f := run(func(t testing.TB) {
		cqrstest.For(t, registry(), newCounter, bump).
			Given(Opened{ID: "c"}, Bumped{ID: "c", By: 1}).
			When(Bump{ID: "c", By: 2}).
			Then(Bumped{ID: "c", By: 2}, Closed{ID: "c"})
	})
	want := `cqrstest: cqrstest_test.Bump: events differ
given:
    [0] Opened {"ID":"c"}
    [1] Bumped {"ID":"c","By":1}
when:
    cqrstest_test.Bump {"ID":"c","By":2}
want:
    [0] Bumped {"ID":"c","By":2}
    [1] Closed {"ID":"c"}
got:
    [0] Bumped {"ID":"c","By":2}`
	if len(f.failures) != 1 || f.failures[0] != want {
		t.Fatalf("failure:\n%s\nwant:\n%s", strings.Join(f.failures, "\n--\n"), want)
	}
}
