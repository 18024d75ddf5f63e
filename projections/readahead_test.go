package projections_test

import (
	"context"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// pageCounter is a store whose subscriptions count the pages they read.
type pageCounter struct {
	es.Store
	mu    sync.Mutex
	pages int
	read  chan int // the count after each page, when there is room
}

func newPageCounter(s es.Store) *pageCounter {
	return &pageCounter{Store: s, read: make(chan int, 100)}
}

func (s *pageCounter) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	return func(yield func([]es.Record, error) bool) {
		for recs, err := range s.Store.Subscribe(ctx, opts) {
			if err == nil {
				s.mu.Lock()
				s.pages++
				n := s.pages
				s.mu.Unlock()
				select {
				case s.read <- n:
				default:
				}
			}
			if !yield(recs, err) {
				return
			}
		}
	}
}

func (s *pageCounter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pages
}

// waitPages waits until the subscriptions have read n pages in all.
func (s *pageCounter) waitPages(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for s.count() < n {
		select {
		case <-s.read:
		case <-timeout:
			t.Fatalf("the subscription read %d pages, want %d", s.count(), n)
		}
	}
}

// positions is a projection that records the positions of the events it
// applies, in order, once their batch has committed.
type positions struct {
	name string
	mu   sync.Mutex
	got  []es.Position
	// firstBatch, when set, is called inside the first batch.
	firstBatch func()
}

func (p *positions) Name() string      { return p.name }
func (p *positions) Handles() []string { return []string{"ItemAdded", "ItemRemoved"} }

func (p *positions) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	p.mu.Lock()
	f := p.firstBatch
	p.firstBatch = nil
	p.mu.Unlock()
	if f != nil {
		f()
	}
	batch := make([]es.Position, len(events))
	for i, ev := range events {
		batch[i] = ev.Record.Position
	}
	// memsink commits unless the handler fails, and it does not: the batch
	// counts as applied.
	p.mu.Lock()
	p.got = append(p.got, batch...)
	p.mu.Unlock()
	return nil
}

func (p *positions) applied() []es.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]es.Position(nil), p.got...)
}

// checkPositions compares the positions applied with those of the log, in
// order, and names the first that differs.
func checkPositions(t *testing.T, store es.Store, got []es.Position) {
	t.Helper()
	recs, err := store.ReadAll(t.Context(), es.Start, 100000)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if i >= len(got) {
			t.Fatalf("%d events applied, want %d; the first missing is at %s", len(got), len(recs), r.Position)
		}
		if got[i] != r.Position {
			t.Fatalf("event %d applied is at %s, want %s (a page skipped or applied twice)", i, got[i], r.Position)
		}
	}
	if len(got) != len(recs) {
		t.Fatalf("%d events applied, want %d: %s applied after the last", len(got), len(recs), got[len(recs)])
	}
}

const (
	readAheadPage  = 50
	readAheadPages = 10
)

// newReadAhead returns a log of ten pages and a worker on it whose first
// batch waits inside until the subscription has read the second page, then
// closes inside and waits until release is closed.
func newReadAhead(t *testing.T, log projections.Config) (store *pageCounter, sink *memsink.Sink, p *positions, w *projections.Worker[*memsink.Tx], inside, release chan struct{}) {
	t.Helper()
	mem := memstore.New()
	appendAdded(t, mem, "a", readAheadPage*readAheadPages/2)
	appendAdded(t, mem, "b", readAheadPage*readAheadPages/2)
	store, sink = newPageCounter(mem), memsink.New()
	inside, release = make(chan struct{}), make(chan struct{})
	p = &positions{name: "p"}
	p.firstBatch = func() {
		store.waitPages(t, 2) // read ahead while this batch is applied
		if n := store.count(); n > 2 {
			t.Errorf("the subscription read %d pages while the first batch was applied, want 2: one page ahead", n)
		}
		close(inside)
		<-release
	}
	cfg := log
	cfg.BatchSize, cfg.BatchWait = readAheadPage, -1
	w = projections.NewWorker(es.Store(store), newRegistry(), sink, projections.Projection[*memsink.Tx](p), cfg)
	return store, sink, p, w, inside, release
}

func TestWorkerReadsOnePageAhead(t *testing.T) {
	t.Parallel()
	store, sink, p, w, _, release := newReadAhead(t, projections.Config{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(t, ctx, w)
	close(release)
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, sink, "p", head)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	checkPositions(t, store, p.applied())
	if got, want := w.Applied(), int64(readAheadPage*readAheadPages); got != want {
		t.Errorf("Applied() = %d, want %d", got, want)
	}
}

// pauseFirst is a sink that pauses the projection just before the
// worker's first batch, once the subscription has read two pages.
type pauseFirst struct {
	*memsink.Sink
	once   sync.Once
	before func()
}

func (s *pauseFirst) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *memsink.Tx) error) error {
	s.once.Do(s.before)
	return s.Sink.Apply(ctx, p, handle)
}

// A pause while the next page has been read ahead: both pages are dropped,
// and read again from the checkpoint on resume.
func TestWorkerPauseDropsThePageReadAhead(t *testing.T) {
	t.Parallel()
	mem := memstore.New()
	appendAdded(t, mem, "a", readAheadPage*readAheadPages)
	store, p := newPageCounter(mem), &positions{name: "p"}
	paused := make(chan struct{})
	sink := &pauseFirst{Sink: memsink.New()}
	sink.before = func() {
		store.waitPages(t, 2)
		if err := projections.Pause(t.Context(), sink, "p"); err != nil {
			t.Error(err)
		}
		close(paused)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(es.Store(store), newRegistry(), projections.Sink[*memsink.Tx](sink), projections.Projection[*memsink.Tx](p),
		projections.Config{Logger: quiet, BatchSize: readAheadPage, BatchWait: -1})
	done := start(t, ctx, w)
	<-paused
	cp, err := sink.Checkpoint(t.Context(), "p")
	if err != nil || cp.Position != es.Start || cp.State != projections.StatePaused {
		t.Fatalf("checkpoint after the pause %+v, %v; want paused at the start", cp, err)
	}
	if err := projections.Resume(t.Context(), sink, "p"); err != nil {
		t.Fatal(err)
	}
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, sink, "p", head)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	checkPositions(t, store, p.applied())
}

// Stopping while the next page has been read ahead: Run returns once the
// batch in flight is done, and the reading goroutine with it (goleak in
// TestMain).
func TestWorkerStopsWithAPageReadAhead(t *testing.T) {
	t.Parallel()
	store, sink, p, w, inside, release := newReadAhead(t, projections.Config{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	done := start(t, ctx, w)
	<-inside
	cancel()
	close(release)
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	cp, err := sink.Checkpoint(t.Context(), "p")
	if err != nil {
		t.Fatal(err)
	}
	got := p.applied()
	if len(got) != readAheadPage || cp.Position != got[len(got)-1] {
		t.Errorf("after the stop: %d events applied, checkpoint %s; want the first page's %d, ending at the checkpoint", len(got), cp.Position, readAheadPage)
	}

	// A new worker goes on from the checkpoint: nothing skipped, nothing twice.
	p.firstBatch = nil
	w2 := projections.NewWorker(es.Store(store), newRegistry(), sink, projections.Projection[*memsink.Tx](p), projections.Config{Logger: quiet, BatchSize: readAheadPage})
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	done2 := start(t, ctx2, w2)
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, sink, "p", head)
	cancel2()
	if err := waitDone(t, done2); err != nil {
		t.Fatal(err)
	}
	checkPositions(t, store, p.applied())
}
