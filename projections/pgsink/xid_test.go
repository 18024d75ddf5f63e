package pgsink_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// A batch of a sink that writes its read model elsewhere (elasticsink's,
// through ApplyTx) must not hold back the readers of the log while its
// handler waits on that other system: another worker of the database
// goes on applying new events meanwhile.
func TestSlowApplyTxDoesNotHoldBackReaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.appendOne(t, "slow-1", "ItemAdded", `{"sku":"a","qty":1}`)
	e.waitVisible(t, first.Position)
	recs, err := e.store.ReadAll(t.Context(), es.Start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("ReadAll returned %d records; want 1", len(recs))
	}

	inside, release := make(chan struct{}), make(chan struct{})
	applied := make(chan error, 1)
	go func() {
		applied <- e.sink.ApplyTx(t.Context(), projections.ApplyParams{
			Projection: "slow", From: es.Start, To: recs[0].Position,
			Events: []projections.Event{{Record: recs[0]}},
		}, func(ctx context.Context, tx pgx.Tx) error {
			close(inside)
			select { // a bulk request to a slow Elasticsearch
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	released := false
	defer func() {
		if !released {
			close(release)
			<-applied
		}
	}()
	select {
	case <-inside:
	case err := <-applied:
		released = true
		t.Fatalf("ApplyTx returned %v before its handler ran", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the handler did not run")
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "fast"}, projections.Config{Logger: quiet, BatchWait: -1})
	done := start(ctx, w)
	next := e.appendOne(t, "fast-1", "ItemAdded", `{"sku":"b","qty":2}`)
	// While the slow batch is in flight, the other projection reaches the
	// new event.
	e.waitFor(t, "fast", next.Position)

	close(release)
	released = true
	if err := <-applied; err != nil {
		t.Fatalf("ApplyTx: %v", err)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != recs[0].Position {
		t.Errorf("checkpoint of slow: Position is %s; want %s", cp.Position, recs[0].Position)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
