package estest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

func subscribeTests() []test {
	return []test{
		{"CatchUpThenLive", testCatchUpThenLive},
		{"Resume", testResume},
		{"BatchSize", testBatchSize},
		{"ConsumerBreaks", testConsumerBreaks},
		{"ContextCanceled", testSubscribeContextCanceled},
		{"ConcurrentWriters", testSubscribeConcurrentWriters},
	}
}

// A subscription ranges over a store's Subscribe in its own goroutine and
// records what it delivers.
type subscription struct {
	t      *testing.T
	opts   es.SubscribeOptions
	cancel context.CancelFunc
	done   chan struct{} // closed when the range loop has ended

	mu      sync.Mutex
	records []es.Record
	batches []int
	errs    []error
	changed chan struct{} // closed and replaced when something is recorded
}

// subscribe starts a subscription that ends when ctx ends, when the test
// calls stop, or at the latest when the test ends.
func subscribe(t *testing.T, ctx context.Context, s es.Store, opts es.SubscribeOptions) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{t: t, opts: opts, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(sub.done)
		for batch, err := range s.Subscribe(ctx, opts) {
			sub.mu.Lock()
			if err != nil {
				sub.errs = append(sub.errs, err)
			} else {
				sub.records = append(sub.records, batch...)
				sub.batches = append(sub.batches, len(batch))
			}
			close(sub.changed)
			sub.changed = make(chan struct{})
			sub.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sub.stop() })
	return sub
}

// delivered returns what the subscription has delivered so far.
func (sub *subscription) delivered() []es.Record {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return append([]es.Record(nil), sub.records...)
}

func (sub *subscription) batchSizes() []int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return append([]int(nil), sub.batches...)
}

// waitUntil waits until done is true of the delivered records and returns
// them. It fails the test if the subscription ends or yields an error
// first, or if ctx ends.
func (sub *subscription) waitUntil(ctx context.Context, what string, done func([]es.Record) bool) []es.Record {
	sub.t.Helper()
	for {
		sub.mu.Lock()
		recs := append([]es.Record(nil), sub.records...)
		errs := append([]error(nil), sub.errs...)
		changed := sub.changed
		sub.mu.Unlock()
		if len(errs) > 0 {
			sub.t.Fatalf("Subscribe(%+v) yielded an error while the test waited for %s: %v", sub.opts, what, errs[0])
		}
		if done(recs) {
			return recs
		}
		select {
		case <-changed:
		case <-sub.done:
			select {
			case <-changed:
				continue // the last batch or error came in
			default:
			}
			sub.t.Fatalf("Subscribe(%+v) ended while the test waited for %s; it delivered %d events", sub.opts, what, len(recs))
		case <-ctx.Done():
			sub.t.Fatalf("Subscribe(%+v) did not deliver %s in time; it delivered %d events: %v", sub.opts, what, len(recs), context.Cause(ctx))
		}
	}
}

// waitFor waits until at least n records have been delivered.
func (sub *subscription) waitFor(ctx context.Context, n int) []es.Record {
	sub.t.Helper()
	return sub.waitUntil(ctx, fmt.Sprintf("%d events", n), func(recs []es.Record) bool { return len(recs) >= n })
}

// waitForID waits until the event id has been delivered.
func (sub *subscription) waitForID(ctx context.Context, id uuid.UUID) []es.Record {
	sub.t.Helper()
	return sub.waitUntil(ctx, "event "+id.String(), func(recs []es.Record) bool {
		for _, r := range recs {
			if r.ID == id {
				return true
			}
		}
		return false
	})
}

// stop cancels the subscription, waits for its range loop to end and fails
// the test if the sequence yielded an error.
func (sub *subscription) stop() {
	sub.t.Helper()
	sub.cancel()
	select {
	case <-sub.done:
	case <-time.After(timeout):
		sub.t.Errorf("Subscribe(%+v) did not end within %v after its context was canceled", sub.opts, timeout)
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, err := range sub.errs {
		sub.t.Errorf("Subscribe(%+v) yielded an error: %v", sub.opts, err)
	}
	sub.errs = nil
}

// checkExactlyOnce appends a marker, waits until sub delivers it and then
// checks that sub delivered the whole log, each event once, in log order,
// in batches of at most its batch size.
func (sub *subscription) checkExactlyOnce(ctx context.Context, s es.Store) {
	sub.t.Helper()
	t := sub.t
	m := mark(t, ctx, s)
	got := sub.waitForID(ctx, m.ID)
	if last := got[len(got)-1]; last.ID != m.ID {
		t.Fatalf("Subscribe(%+v) delivered %v (%s@%d) after the last event appended", sub.opts, last.ID, last.Stream, last.Version)
	}
	log := readAll(t, ctx, s, sub.opts.After)
	checkLogOrder(t, "Subscribe", got)
	checkIDs(t, fmt.Sprintf("Subscribe(%+v) compared with ReadAll", sub.opts), got, ids(log))
	for i := range got {
		if got[i].Position != log[i].Position {
			t.Fatalf("Subscribe delivered event %v at %s, ReadAll has it at %s", got[i].ID, got[i].Position, log[i].Position)
		}
	}
	limit := sub.opts.BatchSize
	if limit <= 0 {
		limit = es.BatchSizeDefault
	}
	for i, n := range sub.batchSizes() {
		if n == 0 || n > limit {
			t.Errorf("Subscribe(%+v) delivered batch %d with %d events; want 1 to %d", sub.opts, i, n, limit)
		}
	}
}

func testCatchUpThenLive(t *testing.T, ctx context.Context, s es.Store) {
	early := subscribe(t, ctx, s, es.SubscribeOptions{}) // on the empty store
	var want []uuid.UUID
	for i := range 3 {
		evs := events("Before", i+1)
		mustAppend(t, ctx, s, fmt.Sprintf("live-%d", i%2), es.Any, evs...)
		want = append(want, eventIDs(evs)...)
	}
	subs := []*subscription{
		early,
		subscribe(t, ctx, s, es.SubscribeOptions{}),
		subscribe(t, ctx, s, es.SubscribeOptions{BatchSize: 2}),
	}
	for _, sub := range subs {
		checkIDs(t, "Subscribe catching up", sub.waitFor(ctx, len(want)), want)
	}
	for i := range 3 {
		evs := events("After", 3-i)
		mustAppend(t, ctx, s, fmt.Sprintf("live-%d", i), es.Any, evs...)
		want = append(want, eventIDs(evs)...)
	}
	for _, sub := range subs {
		checkIDs(t, "Subscribe after live appends", sub.waitFor(ctx, len(want)), want)
	}
	for _, sub := range subs {
		sub.checkExactlyOnce(ctx, s)
		sub.stop()
	}
}

func testResume(t *testing.T, ctx context.Context, s es.Store) {
	evs := events("Numbered", 6)
	var last es.AppendResult
	for i, e := range evs {
		last = mustAppend(t, ctx, s, "resume", es.Exact(int64(i)), e)
	}
	waitVisible(t, ctx, s, last.Position)
	log := readAll(t, ctx, s, es.Start)

	sub := subscribe(t, ctx, s, es.SubscribeOptions{After: log[2].Position})
	checkIDs(t, "Subscribe after the third event", sub.waitFor(ctx, 3), eventIDs(evs[3:]))

	fromHead := subscribe(t, ctx, s, es.SubscribeOptions{After: last.Position})
	next := event("Next", 7)
	mustAppend(t, ctx, s, "resume", es.Exact(6), next)
	checkIDs(t, "Subscribe after the head", fromHead.waitFor(ctx, 1), []uuid.UUID{next.ID})
	checkIDs(t, "Subscribe after the third event, once live", sub.waitFor(ctx, 4), append(eventIDs(evs[3:]), next.ID))

	sub.checkExactlyOnce(ctx, s)
	fromHead.checkExactlyOnce(ctx, s)
}

func testBatchSize(t *testing.T, ctx context.Context, s es.Store) {
	evs := events("Batched", 10)
	mustAppend(t, ctx, s, "batched", es.NoStream, evs...)
	for _, size := range []int{1, 3, 10, 11} {
		sub := subscribe(t, ctx, s, es.SubscribeOptions{BatchSize: size})
		checkIDs(t, fmt.Sprintf("Subscribe with batch size %d", size), sub.waitFor(ctx, len(evs)), eventIDs(evs))
		for i, n := range sub.batchSizes() {
			if n < 1 || n > size {
				t.Errorf("Subscribe with batch size %d delivered batch %d with %d events", size, i, n)
			}
		}
		sub.stop()
	}
	// A live append larger than the batch size is split too.
	sub := subscribe(t, ctx, s, es.SubscribeOptions{BatchSize: 4})
	sub.waitFor(ctx, len(evs))
	more := events("More", 9)
	mustAppend(t, ctx, s, "batched", es.Exact(10), more...)
	checkIDs(t, "Subscribe with batch size 4 after a live append of 9", sub.waitFor(ctx, 19), append(eventIDs(evs), eventIDs(more)...))
	sub.checkExactlyOnce(ctx, s)
}

func testConsumerBreaks(t *testing.T, ctx context.Context, s es.Store) {
	evs := events("Break", 3)
	for i, e := range evs {
		mustAppend(t, ctx, s, "break", es.Exact(int64(i)), e)
	}
	// Break during catch-up.
	batches := 0
	for batch, err := range s.Subscribe(ctx, es.SubscribeOptions{BatchSize: 1}) {
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		batches++
		checkIDs(t, "first batch", batch, eventIDs(evs[:1]))
		break
	}
	if batches != 1 {
		t.Fatalf("ranging over Subscribe and breaking after the first batch saw %d batches", batches)
	}

	// Break once live: the loop body appends the next event itself.
	next := event("Break", 4)
	var got []es.Record
	for batch, err := range s.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		got = append(got, batch...)
		if len(got) == len(evs) {
			mustAppend(t, ctx, s, "break", es.Exact(3), next)
		}
		if len(got) > len(evs) {
			break
		}
	}
	checkIDs(t, "Subscribe until the consumer broke", got, append(eventIDs(evs), next.ID))

	// The store still works.
	mustAppend(t, ctx, s, "break", es.Exact(4), event("Break", 5))
	sub := subscribe(t, ctx, s, es.SubscribeOptions{})
	sub.waitFor(ctx, 5)
	sub.checkExactlyOnce(ctx, s)
}

func testSubscribeContextCanceled(t *testing.T, ctx context.Context, s es.Store) {
	evs := events("Cancel", 3)
	mustAppend(t, ctx, s, "cancel", es.NoStream, evs...)

	// Canceled while waiting for new events.
	sub := subscribe(t, ctx, s, es.SubscribeOptions{})
	sub.waitFor(ctx, len(evs))
	sub.stop() // fails the test unless the sequence ends without an error

	// Canceled before Subscribe is called.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	sub = subscribe(t, canceled, s, es.SubscribeOptions{})
	select {
	case <-sub.done:
	case <-ctx.Done():
		t.Fatal("Subscribe with a canceled context did not end")
	}
	sub.stop()

	// Canceled by the consumer, which keeps ranging.
	live, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan []error, 1)
	go func() {
		var errs []error
		for _, err := range s.Subscribe(live, es.SubscribeOptions{BatchSize: 1}) {
			if err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		done <- errs
	}()
	select {
	case errs := <-done:
		for _, err := range errs {
			t.Errorf("Subscribe yielded an error after its context was canceled: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Subscribe did not end after the consumer canceled its context")
	}
}

func testSubscribeConcurrentWriters(t *testing.T, ctx context.Context, s es.Store) {
	sub := subscribe(t, ctx, s, es.SubscribeOptions{BatchSize: 7})
	const writers, appends = 8, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				stream := fmt.Sprintf("writer-%d", w)
				if i%3 == 0 {
					stream = "shared"
				}
				if _, err := s.Append(ctx, stream, es.Any, events("Concurrent", 1+i%2)...); err != nil {
					t.Errorf("writer %d: Append(%q): %v", w, stream, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sub.checkExactlyOnce(ctx, s)
	want := 0
	for i := range appends {
		want += writers * (1 + i%2)
	}
	if n := len(withoutMarkers(sub.delivered())); n != want {
		t.Errorf("Subscribe delivered %d events, want %d", n, want)
	}
}
