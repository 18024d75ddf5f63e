package estest

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// outOfOrderTests check, with appends held open by cfg.HoldAppend, that an
// append which took an earlier position but commits later is never skipped.
func outOfOrderTests(cfg Config) []test {
	tests := []test{
		{"HeldAppendHoldsBackReaders", func(t *testing.T, ctx context.Context, s es.Store) { testHeldAppend(t, ctx, s, cfg) }},
		{"ManyHeldAppends", func(t *testing.T, ctx context.Context, s es.Store) { testManyHeldAppends(t, ctx, s, cfg) }},
	}
	if cfg.HoldAppend == nil {
		for i := range tests {
			tests[i].run = func(t *testing.T, _ context.Context, _ es.Store) {
				t.Skip("Config.HoldAppend is nil: the store commits appends in position order")
			}
		}
	}
	return tests
}

// hold starts an append with cfg.HoldAppend and returns its commit function,
// which may be called more than once. The append is committed when the test
// ends at the latest, so that a failing test does not leave it open.
func hold(t *testing.T, ctx context.Context, s es.Store, cfg Config, stream string, expected es.ExpectedVersion, evs ...es.EventData) (func() error, error) {
	commit, err := cfg.HoldAppend(ctx, s, stream, expected, evs...)
	if err != nil {
		return nil, fmt.Errorf("HoldAppend(%q, expected %s): %w", stream, expected, err)
	}
	once := sync.OnceValue(func() error {
		if err := commit(); err != nil {
			return fmt.Errorf("commit of HoldAppend(%q, expected %s): %w", stream, expected, err)
		}
		return nil
	})
	t.Cleanup(func() { _ = once() }) // ends a transaction a failed test left open
	return once, nil
}

// testHeldAppend holds an append to stream A open, so that it has an earlier
// position than a later append to stream B which commits first. No reader
// may see B before A has committed; afterwards every reader sees A then B.
func testHeldAppend(t *testing.T, ctx context.Context, s es.Store, cfg Config) {
	x := event("X", 0)
	rx := mustAppend(t, ctx, s, "ooo-x", es.NoStream, x)
	waitVisible(t, ctx, s, rx.Position)
	live := subscribe(t, ctx, s, es.SubscribeOptions{})
	live.waitForID(ctx, x.ID)

	a, b := event("A", 1), event("B", 2)
	commitA, err := hold(t, ctx, s, cfg, "ooo-a", es.NoStream, a)
	if err != nil {
		t.Fatal(err)
	}
	rb := mustAppend(t, ctx, s, "ooo-b", es.NoStream, b)

	// B is committed: its stream shows it. A is not.
	checkIDs(t, "ReadStream(ooo-b) while A is open", mustReadStream(t, ctx, s, "ooo-b", es.ReadStreamOptions{}), []uuid.UUID{b.ID})
	checkNotFound(t, ctx, s, "ooo-a", es.ReadStreamOptions{})

	// The global log stops before A.
	checkIDs(t, "ReadAll(Start) while A, with an earlier position than the committed B, is open",
		readAll(t, ctx, s, es.Start), []uuid.UUID{x.ID})
	if recs, err := s.ReadAll(ctx, rx.Position, 0); err != nil || len(recs) != 0 {
		t.Fatalf("ReadAll after X while A is open = %v, %v; want nothing", ids(recs), err)
	}
	if head, err := s.Head(ctx); err != nil || head != rx.Position {
		t.Fatalf("Head while A is open = %s, %v; want %s, the position of X", head, err, rx.Position)
	}

	// A subscription that starts now catches up with what is visible, X
	// alone, in its first batch. The pull lets the test know that batch was
	// read before A commits.
	pullCtx, cancelPull := context.WithCancel(ctx)
	defer cancelPull()
	next, stop := iter.Pull2(s.Subscribe(pullCtx, es.SubscribeOptions{}))
	defer stop()
	pulled := func(what string) []es.Record {
		batch, err, ok := next()
		switch {
		case !ok:
			t.Fatalf("Subscribe ended before %s", what)
		case err != nil:
			t.Fatalf("Subscribe yielded an error before %s: %v", what, err)
		}
		return batch
	}
	checkIDs(t, "the first batch of a subscription started while A is open", pulled("its first batch"), []uuid.UUID{x.ID})
	for _, r := range live.delivered() {
		if r.ID == b.ID {
			t.Fatal("Subscribe delivered B while A, with an earlier position, was still open")
		}
	}

	if err := commitA(); err != nil {
		t.Fatal(err)
	}

	var got []es.Record
	for len(got) < 2 {
		got = append(got, pulled("A and B were delivered")...)
	}
	checkIDs(t, "the subscription started while A was open, after A committed", got, []uuid.UUID{a.ID, b.ID})
	cancelPull()
	if batch, err, ok := next(); ok {
		t.Fatalf("Subscribe went on after its context was canceled: %d events, error %v", len(batch), err)
	}

	checkIDs(t, "Subscribe after A committed", live.waitForID(ctx, b.ID), []uuid.UUID{x.ID, a.ID, b.ID})
	log := readAll(t, ctx, s, es.Start)
	checkIDs(t, "ReadAll(Start) after A committed", log, []uuid.UUID{x.ID, a.ID, b.ID})
	checkLogOrder(t, "ReadAll(Start) after A committed", log)
	if log[2].Position != rb.Position {
		t.Errorf("B is at %s in the log, its append returned %s", log[2].Position, rb.Position)
	}
	live.checkExactlyOnce(ctx, s)
}

// testManyHeldAppends has writers hold two appends open at a time and commit
// the later one first, while others append normally. A subscriber and a
// reader must each get every event once, in the order of the final log.
func testManyHeldAppends(t *testing.T, ctx context.Context, s es.Store, cfg Config) {
	const (
		holders = 2
		rounds  = 12
		plain   = 24
	)
	live := subscribe(t, ctx, s, es.SubscribeOptions{BatchSize: 5})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for h := range holders {
		wg.Go(func() {
			for r := range int64(rounds) {
				first, err := hold(t, ctx, s, cfg, fmt.Sprintf("held-%d-first", h), es.Exact(r), event("First", int(r)))
				if err != nil {
					t.Error(err)
					return
				}
				second, err := hold(t, ctx, s, cfg, fmt.Sprintf("held-%d-second", h), es.Exact(2*r), events("Second", 2)...)
				if err != nil {
					t.Error(err)
					return
				}
				if err := second(); err != nil {
					t.Error(err)
					return
				}
				if err := first(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range int64(plain) {
			if _, err := s.Append(ctx, "plain", es.Exact(i), event("Plain", int(i))); err != nil {
				t.Errorf("Append(plain, expected %d): %v", i, err)
				return
			}
		}
	})
	go func() {
		wg.Wait()
		close(done)
	}()
	got := follow(t, ctx, s, done)
	if t.Failed() {
		return
	}
	if n, want := len(withoutMarkers(got)), holders*rounds*3+plain; n != want {
		t.Fatalf("the log has %d events, want %d", n, want)
	}
	for h := range holders {
		for _, part := range []string{"first", "second"} {
			stream := fmt.Sprintf("held-%d-%s", h, part)
			recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
			want := make([]int64, len(recs))
			for i := range want {
				want[i] = int64(i + 1)
			}
			if got := versions(recs); len(recs) == 0 || !slices.Equal(got, want) {
				t.Errorf("stream %s has versions %v", stream, got)
			}
		}
	}
	live.checkExactlyOnce(ctx, s)
}
