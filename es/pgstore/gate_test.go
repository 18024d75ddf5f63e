package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// holdOpen appends to stream inside a transaction it leaves open, and
// returns the transaction with its ID and backend pid.
func holdOpen(t *testing.T, s *pgstore.Store, pool *pgxpool.Pool, stream string, e es.EventData) (pgx.Tx, uint64, int) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := s.AppendTx(ctx, tx, stream, es.NoStream, e); err != nil {
		t.Fatal(err)
	}
	var (
		xid uint64
		pid int
	)
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id(), pg_backend_pid()").Scan(&xid, &pid); err != nil {
		t.Fatal(err)
	}
	return tx, xid, pid
}

// naiveRead reads the log the way that skips late commits: by position
// alone, of whatever is committed.
func naiveRead(t *testing.T, pool *pgxpool.Pool, schema string, after int64) (ids []uuid.UUID, last int64) {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT event_id, position FROM "+pgx.Identifier{schema, "events"}.Sanitize()+
		" WHERE position > $1 ORDER BY position", after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	last = after
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id, &last); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids, last
}

// Transaction A appends first (earlier position) and stays open; B appends
// later and commits. The gated read returns neither until A commits, then
// both in (transaction id, position) order. A read by position alone returns
// B, moves its cursor past A, and never sees A.
func TestGatedReadNeverSkipsALateCommit(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	live := subscribe(t, s, es.SubscribeOptions{})

	a, b := ev("A", `{"n":1}`), ev("B", `{"n":2}`)
	txA, xidA, _ := holdOpen(t, s, pool, "stream-a", a)
	resB, err := s.Append(ctx, "stream-b", es.NoStream, b)
	if err != nil {
		t.Fatal(err)
	}
	if resB.Position.Commit <= xidA {
		t.Fatalf("B's transaction %d is not after A's %d", resB.Position.Commit, xidA)
	}

	got, err := s.ReadAll(ctx, es.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("ReadAll while A is open returned %d events (%s first); want none", len(got), got[0].Type)
	}
	if head, err := s.Head(ctx); err != nil || !head.IsZero() {
		t.Fatalf("Head while A is open = %s, %v; want Start", head, err)
	}
	naive, cursor := naiveRead(t, pool, s.Schema(), 0)
	if len(naive) != 1 || naive[0] != b.ID {
		t.Fatalf("naive read while A is open = %v; want B alone (%v)", naive, b.ID)
	}

	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until the subscription has both (another test's open transaction
	// may hold the log back for a moment), then read.
	first, second := live.next(t), live.next(t)
	if first.ID != a.ID || second.ID != b.ID {
		t.Fatalf("subscription delivered %s then %s; want A then B", first.Type, second.Type)
	}
	got, err = s.ReadAll(ctx, es.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("ReadAll after A committed = %v; want A, B", got)
	}
	if !got[0].Position.Before(got[1].Position) || got[0].Position.Commit != xidA {
		t.Errorf("positions A %s, B %s; want A first, with A's transaction id %d", got[0].Position, got[1].Position, xidA)
	}
	if got[0].Position.Prepare >= got[1].Position.Prepare {
		t.Fatalf("A's sequence number %d is not below B's %d: the test did not commit out of order", got[0].Position.Prepare, got[1].Position.Prepare)
	}
	// The naive reader resumes after B's position and never gets A.
	if more, _ := naiveRead(t, pool, s.Schema(), cursor); len(more) != 0 {
		t.Fatalf("naive read after its cursor = %v; want nothing (that is the bug)", more)
	}
}

// HeldBack names the open transaction that hides committed events.
func TestHeldBack(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, held, err := s.HeldBack(ctx); err != nil || held {
		t.Fatalf("HeldBack on an empty store = %v, %v; want not held", held, err)
	}
	txA, xidA, pidA := holdOpen(t, s, pool, "stream-a", ev("A", `{}`))
	resB, err := s.Append(ctx, "stream-b", es.NoStream, ev("B", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	// The oldest running transaction of the server holds the log. Another
	// test's may be older than A for a moment: wait for it to end.
	var h pgstore.Hold
	waitFor(t, func() bool {
		var held bool
		h, held, err = s.HeldBack(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !held {
			t.Fatal("HeldBack reports nothing held while A is open and B committed")
		}
		if h.Position != resB.Position {
			t.Fatalf("HeldBack position %s; want B's %s", h.Position, resB.Position)
		}
		return h.TxID == xidA
	})
	if h.PID != pidA || h.Age <= 0 || h.Started.IsZero() || h.State != "idle in transaction" {
		t.Errorf("HeldBack = %+v; want A's pid %d, an age, a start time and state idle in transaction", h, pidA)
	}
	want := "held at position " + resB.Position.String() + " by transaction "
	if s := h.String(); !strings.HasPrefix(s, want) || !strings.Contains(s, "pid ") {
		t.Errorf("Hold.String() = %q; want it to start with %q and name the pid", s, want)
	}
	if err := txA.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, held, err := s.HeldBack(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return !held
	})
}

// waitTimeout bounds the waits of these tests. It is generous because the
// visibility gate is server-wide: another package's test that holds a
// transaction open (some do, on purpose) holds back every reader of every
// log on the test server until it ends.
const waitTimeout = 90 * time.Second

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", waitTimeout)
		}
		<-tick.C
	}
}

// A holder that rolls back sends no notification. The subscription still
// delivers the events it was hiding soon, not after the poll interval.
func TestSubscribeReleasedByRollback(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{PollInterval: time.Hour})
	ctx := t.Context()
	live := subscribe(t, s, es.SubscribeOptions{})
	txA, _, _ := holdOpen(t, s, pool, "stream-a", ev("A", `{}`))
	b := ev("B", `{}`)
	if _, err := s.Append(ctx, "stream-b", es.NoStream, b); err != nil {
		t.Fatal(err)
	}
	if err := txA.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := live.next(t); got.ID != b.ID {
		t.Fatalf("subscription delivered %s; want B", got.Type)
	}
}

// A caught-up subscription is woken by the notification of an append.
func TestSubscribeWokenByNotify(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{PollInterval: time.Hour})
	ctx := t.Context()
	live := subscribe(t, s, es.SubscribeOptions{})
	for i := range 3 {
		e := ev("T", `{}`)
		if _, err := s.Append(ctx, "notified", es.Exact(int64(i)), e); err != nil {
			t.Fatal(err)
		}
		if got := live.next(t); got.ID != e.ID {
			t.Fatalf("subscription delivered %v; want %v", got.ID, e.ID)
		}
	}
}

// Ending the iteration, by break or by context, ends the subscription and
// its connection; goleak in TestMain checks no goroutine is left.
func TestSubscribeStops(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{PollInterval: time.Hour})
	ctx := t.Context()
	if _, err := s.Append(ctx, "x", es.NoStream, ev("T", `1`), ev("T", `2`)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for batch, err := range s.Subscribe(ctx, es.SubscribeOptions{BatchSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		n += len(batch)
		break
	}
	if n != 1 {
		t.Fatalf("got %d events in the first batch of size 1", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := 0
	for batch, err := range s.Subscribe(cctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("subscription yielded %v; want no error when its context ends", err)
		}
		seen += len(batch)
		if seen == 2 {
			cancel() // the sequence ends while it waits for more
		}
	}
	if seen != 2 {
		t.Fatalf("got %d events; want 2", seen)
	}
}

// live is a subscription running in the background of a test.
type live struct {
	recs chan es.Record
	errs chan error
}

func subscribe(t *testing.T, s *pgstore.Store, opts es.SubscribeOptions) *live {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &live{recs: make(chan es.Record, 1000), errs: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch, err := range s.Subscribe(ctx, opts) {
			if err != nil {
				l.errs <- err
				return
			}
			for _, r := range batch {
				select {
				case l.recs <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}

// next returns the next delivered record, failing the test after
// waitTimeout.
func (l *live) next(t *testing.T) es.Record {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	select {
	case r := <-l.recs:
		return r
	case err := <-l.errs:
		t.Fatalf("subscription failed: %v", err)
	case <-timeout.C:
		t.Fatalf("subscription delivered nothing in %v", waitTimeout)
	}
	return es.Record{}
}

// The gated read is a range scan of the (tx_id, position) index.
func TestReadAllPlan(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Import(ctx, importEvents(20000, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{s.Schema(), "events"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	page, err := s.ReadAll(ctx, es.Start, 10000)
	if err != nil || len(page) == 0 {
		t.Fatalf("ReadAll: %d events, %v", len(page), err)
	}
	after := page[len(page)-1].Position
	rows, err := pool.Query(ctx, "EXPLAIN "+pgstore.ReadAllSQL(s), after.Commit, int64(after.Prepare), 500)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	t.Logf("plan:\n%s", plan)
	if !strings.Contains(plan, "Index Scan using events_log_key") || !strings.Contains(plan, "Index Cond: ((ROW(tx_id, \"position\") > ROW(") ||
		!strings.Contains(plan, "(tx_id < pg_snapshot_xmin(pg_current_snapshot()))") || strings.Contains(plan, "Sort") {
		t.Errorf("ReadAll is not a range scan of events_log_key bounded by the snapshot's xmin:\n%s", plan)
	}
}

// The subscription's question "are there committed events after this
// position?" stays an index probe under the generic plan that PostgreSQL
// gives a prepared statement after five runs: an EXISTS on the row
// comparison was planned as a scan of the whole log.
func TestPendingPlanIsAnIndexProbe(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Import(ctx, importEvents(20000, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{s.Schema(), "events"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	page, err := s.ReadAll(ctx, es.Start, 10000)
	if err != nil || len(page) == 0 {
		t.Fatalf("ReadAll: %d events, %v", len(page), err)
	}
	after := page[len(page)-1].Position
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "PREPARE pending_probe(xid8, bigint) AS "+pgstore.PendingSQL(s)); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "DEALLOCATE pending_probe") //nolint:errcheck // the connection is released either way
	rows, err := tx.Query(ctx, fmt.Sprintf("EXPLAIN EXECUTE pending_probe('%d', %d)", after.Commit, after.Prepare))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	t.Logf("generic plan:\n%s", plan)
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "events_log_key") {
		t.Errorf("the pending probe's generic plan does not use events_log_key:\n%s", plan)
	}
}

// A transaction that got its ID early, then waits for a stream's lock behind
// a younger transaction, still logs its event after the younger one's: every
// stream is in version order in the log.
func TestStreamOrderWithOlderTransactionAppendingLater(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Append(ctx, "s", es.NoStream, ev("First", `{}`)); err != nil {
		t.Fatal(err)
	}

	older, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback(context.Background())
	var olderXID uint64
	var olderPID int
	if err := older.QueryRow(ctx, "SELECT pg_current_xact_id(), pg_backend_pid()").Scan(&olderXID, &olderPID); err != nil {
		t.Fatal(err)
	}

	younger, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer younger.Rollback(context.Background())
	resYounger, err := s.AppendTx(ctx, younger, "s", es.Exact(1), ev("Second", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if resYounger.Position.Commit <= olderXID {
		t.Fatalf("younger transaction %d is not after %d", resYounger.Position.Commit, olderXID)
	}
	third := make(chan error, 1)
	go func() {
		_, err := s.AppendTx(ctx, older, "s", es.Exact(2), ev("Third", `{}`))
		third <- err
	}()
	// Wait until the older transaction waits for the stream's lock.
	waitFor(t, func() bool {
		var waiting bool
		if err := pool.QueryRow(ctx, "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1", olderPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting
	})
	if err := younger.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if err := older.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	live := subscribe(t, s, es.SubscribeOptions{})
	for i, want := range []string{"First", "Second", "Third"} {
		if got := live.next(t); got.Type != want || got.Version != int64(i+1) {
			t.Fatalf("log event %d is %s@%d; want %s@%d", i, got.Type, got.Version, want, i+1)
		}
	}
}

// An append that leaves notifying to another append in flight, and commits
// after that one, is still delivered at once: the subscription sees that
// appends are in flight and looks again within milliseconds.
func TestSubscribeSeesAppendThatDidNotNotify(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{PollInterval: time.Hour})
	ctx := t.Context()
	_, notifyLock := pgstore.LockClasses(s)
	live := subscribe(t, s, es.SubscribeOptions{})
	first := ev("First", `{}`)
	if _, err := s.Append(ctx, "other", es.NoStream, first); err != nil {
		t.Fatal(err)
	}
	if got := live.next(t); got.ID != first.ID {
		t.Fatalf("delivered %s; want First", got.Type)
	}

	// Stand in for an append that holds the right to notify and will
	// notify when it commits.
	notifier := begin(t, pool)
	if _, err := notifier.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 1), pg_notify($2, '')", notifyLock, s.Channel()); err != nil {
		t.Fatal(err)
	}
	// An append as Store.Append makes it (the append function with
	// debouncing), held open: it finds the right to notify taken, so it
	// does not notify.
	silent := begin(t, pool)
	id := uuid.New()
	if _, err := silent.Exec(ctx, "SELECT * FROM "+pgx.Identifier{s.Schema(), "append"}.Sanitize()+
		"($1, $2, 0::smallint, 0, false, true, ARRAY[$3::uuid], ARRAY['T'], ARRAY['{}'::json], ARRAY['{}'::json])",
		"s", pgstore.StreamKey("s"), id); err != nil {
		t.Fatal(err)
	}
	// The notifying append commits first: the subscription wakes up and
	// finds nothing, while the silent one is still in flight. Then that
	// one commits, without a notification.
	if err := notifier.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := silent.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := live.next(t); got.ID != id {
		t.Fatalf("delivered %v; want the silent append's event %v", got.ID, id)
	}
}

func begin(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

// An append that found nobody listening does not notify. A subscriber that
// starts while it is in flight waits for it before listening, and then
// reads its event, without waiting for the poll interval.
func TestSubscribeStartsWhileUnnotifiedAppendInFlight(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{PollInterval: time.Hour})
	ctx := t.Context()
	// An append as Store.Append makes it, held open: the append function
	// with debouncing, inside a transaction.
	tx := begin(t, pool)
	id := uuid.New()
	if _, err := tx.Exec(ctx, "SELECT * FROM "+pgx.Identifier{s.Schema(), "append"}.Sanitize()+
		"($1, $2, 0::smallint, 0, false, true, ARRAY[$3::uuid], ARRAY['T'], ARRAY['{}'::json], ARRAY['{}'::json])",
		"s", pgstore.StreamKey("s"), id); err != nil {
		t.Fatal(err)
	}
	live := subscribe(t, s, es.SubscribeOptions{})
	// Wait until the subscriber waits for the append's locks.
	_, notifyLock := pgstore.LockClasses(s)
	waitFor(t, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks
			WHERE locktype = 'advisory' AND classid::int = $1 AND NOT granted)`, notifyLock).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		return waiting
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := live.next(t); got.ID != id {
		t.Fatalf("delivered %v; want the append's event %v", got.ID, id)
	}
}

// While a subscriber listens, an append that may not notify marks itself as
// in flight until it commits; subscribers look again while one is.
func TestAppendsInFlightWhileSubscriberListens(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	_, notifyLock := pgstore.LockClasses(s)
	appendInTx := func() pgx.Tx {
		tx := begin(t, pool)
		if _, err := tx.Exec(ctx, "SELECT * FROM "+pgx.Identifier{s.Schema(), "append"}.Sanitize()+
			"($1, $2, 0::smallint, 0, false, true, ARRAY[$3::uuid], ARRAY['T'], ARRAY['{}'::json], ARRAY['{}'::json])",
			"s", pgstore.StreamKey("s"), uuid.New()); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	// The last committed event, visible or not.
	last := func() es.Position {
		t.Helper()
		var p es.Position
		var prepare int64
		err := pool.QueryRow(ctx, "SELECT tx_id, position FROM "+pgx.Identifier{s.Schema(), "events"}.Sanitize()+
			" ORDER BY tx_id DESC, position DESC LIMIT 1").Scan(&p.Commit, &prepare)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		p.Prepare = uint64(prepare)
		return p
	}
	idle := func() bool {
		t.Helper()
		ok, err := pgstore.AppendsIdle(ctx, s, last())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// Nobody listens: the append does not notify and needs no mark.
	tx := appendInTx()
	if !idle() {
		t.Error("appends not idle while the only append in flight found nobody listening")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// A subscriber listens (its locks, taken as Subscribe does).
	listener, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "SELECT pg_advisory_lock_shared($1, k) FROM generate_series(18, 33) AS k", notifyLock); err != nil {
		t.Fatal(err)
	}
	defer listener.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
	tx = appendInTx()
	if idle() {
		t.Error("appends idle while an append that may not have notified is in flight")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !idle() {
		t.Error("appends not idle after the append in flight committed")
	}
	if ok, err := pgstore.AppendsIdle(ctx, s, es.Start); err != nil || ok {
		t.Errorf("AppendsIdle(Start) = %v, %v; want false: committed events are pending after Start", ok, err)
	}
}
