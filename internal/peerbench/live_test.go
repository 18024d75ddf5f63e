package peerbench_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/bench"
)

// liveClients is how many writers append while a live reader reads.
const liveClients = 8

// liveWaitMax bounds the wait for a live reader to reach the last event
// written; only a broken reader takes that long.
const liveWaitMax = 2 * time.Minute

// key names an event by its stream and version.
type key struct {
	stream  string
	version int64
}

// tracker collects what the writers wrote and what a live reader saw. The
// reader is done when it has seen the event at the largest position
// written: a reader that reads in position order never goes back, so
// whatever it has not seen by then it has skipped for good.
type tracker struct {
	mu       sync.Mutex
	written  map[key]bool
	seen     map[key]int
	last     key
	lastPos  es.Position
	finished bool
	done     chan struct{}
}

func newTracker() *tracker {
	return &tracker{written: map[key]bool{}, seen: map[key]int{}, done: make(chan struct{})}
}

func (t *tracker) wrote(k key, pos es.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written[k] = true
	if t.lastPos.Before(pos) {
		t.last, t.lastPos = k, pos
	}
}

func (t *tracker) see(ev readEvent, _ es.Position) {
	k := key{ev.Stream, ev.Version}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen[k]++
	if t.finished && k == t.last && t.seen[k] == 1 {
		close(t.done)
	}
}

// finish says that every writer is done.
func (t *tracker) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.finished = true
	if t.seen[t.last] > 0 || len(t.written) == 0 {
		close(t.done)
	}
}

// liveResult is what a live read under concurrent writers found.
type liveResult struct {
	Written int // events written
	Skipped int // written but never seen by the reader
	Twice   int // seen more than once
	Foreign int // seen but not written by this run
}

func (t *tracker) result() liveResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := liveResult{Written: len(t.written)}
	for k := range t.written {
		if t.seen[k] == 0 {
			r.Skipped++
		}
	}
	for k, n := range t.seen {
		if n > 1 {
			r.Twice++
		}
		if !t.written[k] {
			r.Foreign++
		}
	}
	return r
}

// liveRuns numbers the live runs, so that each writes to streams of its own.
var liveRuns atomic.Int64

// liveRead appends n single events from liveClients writers while s's live
// reader reads from the head of the log, waits until the reader has seen
// the last event written, and says what it skipped. wroteAll is called
// when the writers are done, before the wait.
func liveRead(ctx context.Context, s side, n int, wroteAll func()) (liveResult, error) {
	after, err := s.head(ctx)
	if err != nil {
		return liveResult{}, fmt.Errorf("read the head: %w", err)
	}
	t := newTracker()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() { readErr <- s.live(rctx, after, t.see) }()

	run := liveRuns.Add(1)
	err = parallel(liveClients, n, func(client int) func() error {
		ss := bench.NewStreams(fmt.Sprintf("live-%d-%d", run, client), 50)
		return func() error {
			stream, v := ss.Take(1)
			pos, err := s.append(ctx, stream, v, 1)
			if err != nil {
				return err
			}
			t.wrote(key{stream, v + 1}, pos)
			s.written()
			return nil
		}
	})
	if wroteAll != nil {
		wroteAll()
	}
	if err != nil {
		return liveResult{}, fmt.Errorf("append: %w", err)
	}
	t.finish()
	wait := time.NewTimer(liveWaitMax)
	defer wait.Stop()
	select {
	case <-t.done:
	case err := <-readErr:
		return t.result(), fmt.Errorf("the live reader stopped before it reached the last event written: %v", err)
	case <-wait.C:
		return t.result(), fmt.Errorf("the live reader did not reach the last event written in %s", liveWaitMax)
	}
	cancel()
	if err := <-readErr; err != nil {
		return t.result(), fmt.Errorf("live read: %w", err)
	}
	return t.result(), nil
}

// parallel runs n operations on clients goroutines, each with an operation
// of its own made by newOp, and returns the first error.
func parallel(clients, n int, newOp func(client int) func() error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first error
		once  sync.Once
	)
	for c := range clients {
		op := newOp(c)
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// runs numbers the runs of benchmark functions, so that each run appends to
// streams of its own (the same function runs several times with -count).
var runs atomic.Int64

// skippedMetrics reports r as benchmark metrics.
func skippedMetrics(b *testing.B, r liveResult) {
	b.ReportMetric(float64(r.Skipped), "skipped")
	if r.Written > 0 {
		b.ReportMetric(100*float64(r.Skipped)/float64(r.Written), "skipped-%")
	}
}
