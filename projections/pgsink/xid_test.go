package pgsink_test

import (
	"context"
	"errors"
	"hash/fnv"
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

	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	applied := e.blockedApply(t, "slow", recs[0], release)

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

// blockedApply starts a batch of name through ApplyTx from the start of
// the log to rec, whose handler waits for release; it returns once the
// handler runs, and the channel ApplyTx's error arrives on.
func (e env) blockedApply(t *testing.T, name string, rec es.Record, release <-chan struct{}) <-chan error {
	t.Helper()
	inside := make(chan struct{})
	applied := make(chan error, 1)
	go func() {
		applied <- e.sink.ApplyTx(t.Context(), projections.ApplyParams{
			Projection: name, From: es.Start, To: rec.Position, Events: []projections.Event{{Record: rec}},
		}, func(ctx context.Context, tx pgx.Tx) error {
			close(inside)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	select {
	case <-inside:
	case err := <-applied:
		t.Fatalf("ApplyTx returned %v before its handler ran", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the handler did not run")
	}
	return applied
}

// waitLockWaiters waits until n sessions wait for the checkpoint lock of
// name in the sink's schema.
func (e env) waitLockWaiters(t *testing.T, name string, n int) {
	t.Helper()
	class := fnv.New32a()
	class.Write([]byte("strata/pgsink/checkpoints/" + e.sink.Schema()))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
			AND classid::int8 = $1 AND objid::int8 = pg_catalog.hashtext($2)::int8 & 4294967295`,
			int64(class.Sum32()), name).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the checkpoint lock of %s; want %d", waiting, name, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// The batch holds no row lock, yet a Reset and a pause still wait for the
// batch in flight: the batch commits, then the reset and the pause take
// effect, and the checkpoint stays where the reset put it.
func TestResetAndPauseWaitForBatchInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.appendOne(t, "wait-1", "ItemAdded", `{"sku":"a","qty":1}`)
	e.waitVisible(t, first.Position)
	recs, err := e.store.ReadAll(t.Context(), es.Start, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("ReadAll: %d records, %v; want 1", len(recs), err)
	}
	release := make(chan struct{})
	applied := e.blockedApply(t, "waits", recs[0], release)
	reset, paused := make(chan error, 1), make(chan error, 1)
	go func() { reset <- e.sink.Reset(t.Context(), "waits", es.Start) }()
	go func() { paused <- projections.Pause(t.Context(), e.sink, "waits") }()
	e.waitLockWaiters(t, "waits", 2)
	close(release)
	if err := <-applied; err != nil {
		t.Fatalf("ApplyTx: %v; want the batch to commit before the reset", err)
	}
	if err := <-reset; err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := <-paused; err != nil {
		t.Fatalf("Pause: %v", err)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "waits")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != es.Start || cp.State != projections.StatePaused {
		t.Errorf("checkpoint: Position %s, State %s; want %s, %s", cp.Position, cp.State, es.Start, projections.StatePaused)
	}
}

// A checkpoint moved during a batch by a writer that does not take the
// lock (an older version of the sink) is not overwritten: the batch fails
// with a CheckpointMovedError.
func TestBatchDoesNotOverwriteCheckpointMovedWithoutLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.appendOne(t, "moved-1", "ItemAdded", `{"sku":"a","qty":1}`)
	e.waitVisible(t, first.Position)
	recs, err := e.store.ReadAll(t.Context(), es.Start, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("ReadAll: %d records, %v; want 1", len(recs), err)
	}
	release := make(chan struct{})
	applied := e.blockedApply(t, "moved", recs[0], release)
	e.exec(t, `INSERT INTO {{schema}}.projection_checkpoints (name, commit_pos, prepare_pos) VALUES ('moved', 7, 7)`)
	close(release)
	err = <-applied
	var moved *projections.CheckpointMovedError
	if !errors.As(err, &moved) {
		t.Fatalf("ApplyTx: %v; want a CheckpointMovedError", err)
	}
	want := es.Position{Commit: 7, Prepare: 7}
	if moved.Actual != want || moved.Expected != es.Start {
		t.Errorf("CheckpointMovedError: Expected %s, Actual %s; want %s, %s", moved.Expected, moved.Actual, es.Start, want)
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "moved"); err != nil || cp.Position != want {
		t.Errorf("checkpoint: Position %s, %v; want %s", cp.Position, err, want)
	}
}
