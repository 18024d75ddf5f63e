package estest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

func concurrencyTests() []test {
	return []test{
		{"OneWinnerPerVersion", testOneWinnerPerVersion},
		{"RetryingWriters", testRetryingWriters},
		{"ManyStreams", testManyStreams},
		{"ReadAllWhileWriting", testReadAllWhileWriting},
	}
}

// testOneWinnerPerVersion lets writers race for each version of one stream:
// in every round all of them append with the same exact version, and
// exactly one may win.
func testOneWinnerPerVersion(t *testing.T, ctx context.Context, s es.Store) {
	const (
		stream  = "contested"
		writers = 8
		rounds  = 15
	)
	var winners []uuid.UUID
	for r := range int64(rounds) {
		expected := es.Exact(r)
		evs := make([]es.EventData, writers)
		errs := make([]error, writers)
		results := make([]es.AppendResult, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			evs[w] = event("Contested", w)
			wg.Go(func() {
				<-start
				results[w], errs[w] = s.Append(ctx, stream, expected, evs[w])
			})
		}
		close(start)
		wg.Wait()

		won := -1
		for w, err := range errs {
			if err == nil {
				if won >= 0 {
					t.Fatalf("round %d: writers %d and %d both appended with expected %s", r, won, w, expected)
				}
				won = w
				continue
			}
			checkConflict(t, err, stream, expected, r+1)
		}
		if won < 0 {
			t.Fatalf("round %d: no writer could append with expected %s", r, expected)
		}
		if results[won].Version != r+1 {
			t.Fatalf("round %d: the winning append returned version %d, want %d", r, results[won].Version, r+1)
		}
		winners = append(winners, evs[won].ID)
	}

	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	checkIDs(t, "the contested stream", recs, winners)
	for i, r := range recs {
		if r.Version != int64(i+1) {
			t.Fatalf("event %d of the contested stream has version %d", i, r.Version)
		}
	}
	checkIDs(t, "the log", settledLog(t, ctx, s), winners)
}

// testRetryingWriters runs the read-decide-append loop of an aggregate from
// several goroutines at once: on a conflict, a writer retries at the version
// the conflict reports.
func testRetryingWriters(t *testing.T, ctx context.Context, s es.Store) {
	const (
		stream  = "retried"
		writers = 6
		each    = 10
	)
	mine := make([][]uuid.UUID, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var version int64
			for len(mine[w]) < each {
				e := event(fmt.Sprintf("Writer%d", w), len(mine[w]))
				res, err := s.Append(ctx, stream, es.Exact(version), e)
				if vc, ok := errors.AsType[*es.VersionConflictError](err); ok {
					if vc.Actual <= version {
						t.Errorf("writer %d: conflict at expected %d reports the stream at %d", w, version, vc.Actual)
						return
					}
					version = vc.Actual
					continue
				}
				if err != nil {
					t.Errorf("writer %d: Append(expected %d): %v", w, version, err)
					return
				}
				if res.Version != version+1 {
					t.Errorf("writer %d: Append(expected %d) returned version %d", w, version, res.Version)
					return
				}
				version = res.Version
				mine[w] = append(mine[w], e.ID)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	if len(recs) != writers*each {
		t.Fatalf("the stream has %d events, want %d", len(recs), writers*each)
	}
	pos := make(map[uuid.UUID]int, len(recs))
	for i, r := range recs {
		if r.Version != int64(i+1) {
			t.Fatalf("event %d of the stream has version %d", i, r.Version)
		}
		pos[r.ID] = i
	}
	for w, evs := range mine {
		for i, id := range evs {
			p, ok := pos[id]
			if !ok {
				t.Fatalf("writer %d's event %d (%v) is missing from the stream", w, i, id)
			}
			if i > 0 && p < pos[evs[i-1]] {
				t.Fatalf("writer %d's events are out of order in the stream", w)
			}
		}
	}
	checkIDs(t, "the log", settledLog(t, ctx, s), ids(recs))
}

// written is what a writer appended: the events and the append's result.
type written struct {
	events []es.EventData
	res    es.AppendResult
}

// writeConcurrently has writers append appends times each, to their own
// stream and, every third time, to the stream "shared" with es.Any. It
// returns what each writer wrote.
func writeConcurrently(t *testing.T, ctx context.Context, s es.Store, writers, appends int) [][]written {
	t.Helper()
	out := make([][]written, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var own int64 // the version of the writer's own stream
			for i := range appends {
				stream, expected := fmt.Sprintf("writer-%d", w), es.Exact(own)
				if i%3 == 0 {
					stream, expected = "shared", es.Any
				}
				evs := events(fmt.Sprintf("Writer%d", w), 1+i%3)
				res, err := s.Append(ctx, stream, expected, evs...)
				if err != nil {
					t.Errorf("writer %d: Append(%q, expected %s): %v", w, stream, expected, err)
					return
				}
				if stream != "shared" {
					own = res.Version
				}
				out[w] = append(out[w], written{evs, res})
			}
		})
	}
	wg.Wait()
	return out
}

func testManyStreams(t *testing.T, ctx context.Context, s es.Store) {
	const writers, appends = 8, 12
	wrote := writeConcurrently(t, ctx, s, writers, appends)
	if t.Failed() {
		return
	}
	log := settledLog(t, ctx, s)
	checkLogOrder(t, "the log after concurrent appends", log)
	checkWritten(t, log, wrote)
}

// checkWritten fails the test unless log holds exactly the events in wrote,
// each stream's events in version order, every append's events contiguous
// in its stream and at the position its result names.
func checkWritten(t *testing.T, log []es.Record, wrote [][]written) {
	t.Helper()
	at := make(map[uuid.UUID]es.Record, len(log))
	for _, r := range log {
		at[r.ID] = r
	}
	n := 0
	for w, ws := range wrote {
		for _, x := range ws {
			for i, e := range x.events {
				n++
				r, ok := at[e.ID]
				if !ok {
					t.Fatalf("writer %d's event %v is missing from the log", w, e.ID)
				}
				if r.Stream != x.res.Stream || r.Version != x.res.Version-int64(len(x.events)-1-i) {
					t.Fatalf("writer %d's event %v is %s@%d in the log; its append returned %s@%d", w, e.ID, r.Stream, r.Version, x.res.Stream, x.res.Version)
				}
			}
			if last := at[x.events[len(x.events)-1].ID]; last.Position != x.res.Position {
				t.Fatalf("writer %d's append returned position %s, but its last event is at %s", w, x.res.Position, last.Position)
			}
		}
	}
	if len(log) != n {
		t.Fatalf("the log has %d events, the writers wrote %d", len(log), n)
	}
	next := make(map[string]int64)
	for _, r := range log {
		if next[r.Stream]++; r.Version != next[r.Stream] {
			t.Fatalf("the log has %s@%d where %s@%d comes next", r.Stream, r.Version, r.Stream, next[r.Stream])
		}
	}
}

// testReadAllWhileWriting pages through the log while writers append, and
// checks that the reader ends up with exactly the log: no event skipped, none
// read twice.
func testReadAllWhileWriting(t *testing.T, ctx context.Context, s es.Store) {
	const writers, appends = 4, 20
	var wrote [][]written
	done := make(chan struct{})
	go func() {
		defer close(done)
		wrote = writeConcurrently(t, ctx, s, writers, appends)
	}()
	got := follow(t, ctx, s, done)
	if t.Failed() {
		return
	}
	checkWritten(t, withoutMarkers(got), wrote)
}

// follow pages through the log with ReadAll until done is closed, then
// appends a marker and reads up to it. It checks that what it read is the
// whole log in order, each event once, and returns it.
func follow(t *testing.T, ctx context.Context, s es.Store, done <-chan struct{}) []es.Record {
	t.Helper()
	const limit = 7
	var (
		got      []es.Record
		after    es.Position
		target   es.Position
		finished bool
	)
	for !finished || after.Before(target) {
		if !finished {
			select {
			case <-done:
				finished = true
				target = mark(t, ctx, s).Position
			default:
			}
		}
		page, err := s.ReadAll(ctx, after, limit)
		if err != nil {
			<-done
			t.Fatalf("ReadAll(%s, %d): %v", after, limit, err)
		}
		if len(page) > limit {
			<-done
			t.Fatalf("ReadAll(%s, %d) returned %d events", after, limit, len(page))
		}
		if len(page) == 0 {
			if ctx.Err() != nil {
				<-done
				t.Fatalf("the reader did not reach the marker at %s in time: it is at %s", target, after)
			}
			runtime.Gosched()
			continue
		}
		got = append(got, page...)
		after = page[len(page)-1].Position
	}
	checkLogOrder(t, "the events a reader got while writers appended", got)
	log := readAll(t, ctx, s, es.Start)
	checkIDs(t, "the events a reader got while writers appended, compared with the log", got, ids(log))
	if !slices.EqualFunc(got, log, func(a, b es.Record) bool { return a.Position == b.Position }) {
		t.Fatal("a reader got events at other positions than the log has them now")
	}
	return got
}
