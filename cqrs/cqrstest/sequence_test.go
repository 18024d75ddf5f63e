package cqrstest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/cqrstest"
)

// Close closes a counter.
type Close struct{ ID string }

var closeCounter = cqrs.OnExisting(
	func(c Close) string { return c.ID },
	func(_ context.Context, s *counter, c Close) ([]any, error) {
		if !s.Open {
			return nil, ErrClosed
		}
		return []any{Closed(c)}, nil
	})

func counters(t testing.TB) *cqrstest.Sequence[*counter] {
	return cqrstest.NewSequence(t, registry(), newCounter,
		cqrstest.Decides(open), cqrstest.Decides(bump), cqrstest.Decides(closeCounter))
}

func TestPassingSequences(t *testing.T) {
	t.Parallel()
	// Each step sees what the steps before it appended.
	s := counters(t).
		When(Open{ID: "c"}).Then(Opened{ID: "c"}).
		When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 2}).
		When(&Bump{ID: "c", By: 3}).Then(Bumped{ID: "c", By: 3})
	if res := s.Result(); res.Stream != "c" || res.Version != 3 {
		t.Errorf("Result() after three steps = %+v; want version 3 of stream c", res)
	}
	s.When(Close{ID: "c"}).Then(Closed{ID: "c"}).
		When(Bump{ID: "c", By: 1}).ThenError(ErrClosed).
		When(Open{ID: "c"}).ThenError(cqrs.ErrAggregateExists).
		ThenAll(Opened{ID: "c"}, Bumped{ID: "c", By: 2}, Bumped{ID: "c", By: 3}, Closed{ID: "c"})

	// Given events are the first command's aggregate's.
	var ve *cqrs.ValidationError
	counters(t).Given(Opened{ID: "c"}, Bumped{ID: "c", By: 1}).
		When(Bump{ID: "c"}).ThenErrorAs(&ve).
		When(Bump{ID: "c", By: 1}).Then(Bumped{ID: "c", By: 1}).
		ThenAll(Bumped{ID: "c", By: 1})
	if ve == nil || ve.Fields[0].Field != "By" {
		t.Errorf("ThenErrorAs did not set its target: %+v", ve)
	}

	// Steps may name other aggregates; ThenAll lists their events in log order.
	counters(t).Given(Opened{ID: "a"}).
		When(Bump{ID: "a", By: 1}).Then(Bumped{ID: "a", By: 1}).
		When(Open{ID: "b"}).Then(Opened{ID: "b"}).
		When(Bump{ID: "b", By: 2}).Then(Bumped{ID: "b", By: 2}).
		ThenAll(Bumped{ID: "a", By: 1}, Opened{ID: "b"}, Bumped{ID: "b", By: 2})
}

func TestFailingSequences(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		sequence func(t testing.TB)
		fatal    bool
		want     []string // substrings of the one failure message
	}{
		{"wrong event in a later step", func(t testing.TB) {
			counters(t).When(Open{ID: "c"}).Then(Opened{ID: "c"}).
				When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 3})
		}, false, []string{"step 2, cqrstest_test.Bump: events differ", "1. cqrstest_test.Open {\"ID\":\"c\"}",
			"2. cqrstest_test.Bump {\"ID\":\"c\",\"By\":2}", "want:\n    [0] Bumped {\"ID\":\"c\",\"By\":3}", "got:\n    [0] Bumped {\"ID\":\"c\",\"By\":2}"}},
		{"a step depends on the one before", func(t testing.TB) {
			// Without the first step's Opened, the bump fails: the steps
			// share one store.
			counters(t).When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 2})
		}, false, []string{"step 1, cqrstest_test.Bump: want events, got an error", "aggregate c not found"}},
		{"success instead of error", func(t testing.TB) {
			counters(t).When(Open{ID: "c"}).ThenError(ErrClosed)
		}, false, []string{"step 1, cqrstest_test.Open: want an error, got success", `[0] Opened {"ID":"c"}`}},
		{"wrong error", func(t testing.TB) {
			counters(t).Given(Opened{ID: "c"}).When(Close{ID: "c"}).Then(Closed{ID: "c"}).
				When(Open{ID: "c"}).ThenError(ErrClosed)
		}, false, []string{"step 2, cqrstest_test.Open: wrong error", "counter is closed", "already exists"}},
		{"wrong error type", func(t testing.TB) {
			var ce *cqrs.ConflictError
			counters(t).When(Bump{ID: "c", By: 1}).ThenErrorAs(&ce)
		}, false, []string{"step 1, cqrstest_test.Bump: wrong error type", "*cqrs.ConflictError"}},
		{"an unchecked failed step", func(t testing.TB) {
			counters(t).When(Bump{ID: "c", By: 1}).When(Open{ID: "c"}).Then(Opened{ID: "c"})
		}, false, []string{"step 1, cqrstest_test.Bump: the step failed, and no ThenError or ThenErrorAs checked it", "not found"}},
		{"an unchecked failed last step", func(t testing.TB) {
			counters(t).When(Open{ID: "c"}).When(Open{ID: "c"}).ThenAll(Opened{ID: "c"})
		}, false, []string{"step 2, cqrstest_test.Open: the step failed", "already exists"}},
		{"all events differ", func(t testing.TB) {
			counters(t).When(Open{ID: "c"}).Then(Opened{ID: "c"}).
				When(Bump{ID: "c", By: 2}).Then(Bumped{ID: "c", By: 2}).
				ThenAll(Opened{ID: "c"})
		}, false, []string{"the events of all steps differ", "2. cqrstest_test.Bump", "got:\n    [0] Opened {\"ID\":\"c\"}\n    [1] Bumped {\"ID\":\"c\",\"By\":2}"}},
		{"then before when", func(t testing.TB) {
			counters(t).Then()
		}, true, []string{"Then before When"}},
		{"given after when", func(t testing.TB) {
			counters(t).When(Open{ID: "c"}).Given(Opened{ID: "c"})
		}, true, []string{"Given after When"}},
		{"given for a command without a decider", func(t testing.TB) {
			counters(t).Given(Opened{ID: "c"}).When(KeyedBump{ID: "c", By: 1})
		}, true, []string{"no decider for the first command, cqrstest_test.KeyedBump"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := run(tc.sequence)
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
