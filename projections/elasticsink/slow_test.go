package elasticsink_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
)

// slowSearch is orderSearch whose batches wait for release once inside,
// as a batch waits on a slow Elasticsearch.
type slowSearch struct {
	orderSearch
	inside, release chan struct{}
}

func (p slowSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	select {
	case <-p.inside:
	default:
		close(p.inside)
	}
	select {
	case <-p.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.orderSearch.HandleBatch(ctx, tx, events)
}

// A batch that waits on Elasticsearch holds back no reader of the log: a
// subscriber receives an event appended meanwhile, and the batch then
// commits.
func TestSlowBatchDoesNotHoldBackReaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := slowSearch{orderSearch: e.proj, inside: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(p.release)
		}
	}()
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, BatchWait: -1,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	e.append(t, "orders-1", orderPlaced{Order: "o1", Customer: "c1", Product: "chair", Total: 1, Status: "placed"})
	select {
	case <-p.inside:
	case err := <-done:
		t.Fatalf("Run returned %v before a batch started", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no batch started")
	}
	next := e.append(t, "orders-2", orderPlaced{Order: "o2", Customer: "c2", Product: "table", Total: 2, Status: "placed"})
	// Fails the test when the subscriber does not see next within 30s.
	if evs := e.events(t, next); evs[len(evs)-1].Record.Position != next {
		t.Fatalf("the subscriber's last event is at %s; want %s", evs[len(evs)-1].Record.Position, next)
	}

	close(p.release)
	released = true
	e.waitFor(t, next)
	if docs := e.docs(t); len(docs) != 2 {
		t.Errorf("%d documents, want 2", len(docs))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
