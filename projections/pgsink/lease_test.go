package pgsink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// A released lease can be taken again at once: Release unlocks before it
// closes the connection, whose backend would otherwise give the lock up
// only when it noticed.
func TestLeaseReleaseIsImmediate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 200 {
		lease, got, err := e.sink.TryLock(t.Context(), "p")
		if err != nil || !got {
			t.Fatalf("try %d: TryLock = %v, %v right after a release; want the lease", i, got, err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatalf("try %d: Release: %v", i, err)
		}
		if pid, held, err := e.sink.LeaseHolder(t.Context(), "p"); err != nil || held {
			t.Fatalf("try %d: LeaseHolder = %d, %v, %v right after Release; want nobody", i, pid, held, err)
		}
	}
}

// leasePool returns a pool on the test database whose connections carry an
// application name unique to the test, the application name of the lease
// connection of a sink on it, and a count of the connections opened on its
// configuration that are neither the pool's own nor its listening
// connection: lease connections.
func leasePool(t *testing.T) (pool *pgxpool.Pool, leaseApp string, connects *atomic.Int32) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	app := "strata-test-" + hex.EncodeToString(b[:])
	leaseApp = app + " leases"
	connects = new(atomic.Int32)
	cfg.MaxConns = 24
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	cfg.ConnConfig.ValidateConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
		if a := pc.ParameterStatus("application_name"); a != app && a != app+" listener" {
			connects.Add(1)
		}
		return nil
	}
	pool, err = pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, leaseApp, connects
}

// leaseSink returns a sink on the schema of e, on a pool of its own (see
// leasePool), as another process would have.
func (e env) leaseSink(t *testing.T) (sink *pgsink.Sink, leaseApp string, connects *atomic.Int32) {
	t.Helper()
	pool, leaseApp, connects := leasePool(t)
	sink = pgsink.New(pool, pgsink.Config{Schema: e.sink.Schema(), Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	return sink, leaseApp, connects
}

func mustLock(t *testing.T, sink *pgsink.Sink, name string) projections.Lease {
	t.Helper()
	lease, got, err := sink.TryLock(t.Context(), name)
	if err != nil || !got {
		t.Fatalf("TryLock(%s) = %v, %v; want the lease", name, got, err)
	}
	return lease
}

func mustNotLock(t *testing.T, sink *pgsink.Sink, name, why string) {
	t.Helper()
	lease, got, err := sink.TryLock(t.Context(), name)
	if err != nil || got {
		if got {
			_ = lease.Release(t.Context())
		}
		t.Fatalf("TryLock(%s) = %v, %v %s; want false, nil", name, got, err, why)
	}
}

func holder(t *testing.T, sink *pgsink.Sink, name string) int {
	t.Helper()
	pid, held, err := sink.LeaseHolder(t.Context(), name)
	if err != nil || !held {
		t.Fatalf("LeaseHolder(%s) = %d, %v, %v; want a holder", name, pid, held, err)
	}
	return pid
}

// Advisory locks are re-entrant within a session, and a sink holds all its
// leases on one: it must refuse a lease it holds already.
func TestLeaseRefusedToItsOwnSink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lease := mustLock(t, e.sink, "p")
	mustNotLock(t, e.sink, "p", "while the same sink holds it")
	other := mustLock(t, e.sink, "q")
	mustNotLock(t, e.sink, "p", "while the same sink holds it and another")
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	again := mustLock(t, e.sink, "p")
	for _, l := range []projections.Lease{again, other} {
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// A lease held by one process is refused to another, and given to it as
// soon as the holder releases it, whether the holder keeps other leases
// (and its connection) or not.
func TestLeaseTwoSinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, aApp, aConnects := e.leaseSink(t)
	b, bApp, _ := e.leaseSink(t)

	p := mustLock(t, a, "p")
	q := mustLock(t, a, "q")
	mustNotLock(t, b, "p", "while another sink holds it")
	if err := p.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	bp := mustLock(t, b, "p")
	if got, want := holder(t, a, "p"), holder(t, b, "p"); got != want {
		t.Errorf("LeaseHolder(p) seen from a = %d, from b = %d; want the same", got, want)
	}
	mustNotLock(t, a, "p", "after it released it to another sink that holds it now")

	if err := bp.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := q.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	// q was a's last lease: its connection is closed with it.
	bq := mustLock(t, b, "q")
	if err := bq.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := aConnects.Load(); got != 1 {
		t.Errorf("sink a opened %d lease connections; want 1 for its two leases", got)
	}
	pgtest.WaitForSessions(t, aApp, 0)
	pgtest.WaitForSessions(t, bApp, 0)
}

// A standby whose sink holds no lease looks on the pool before it
// connects: it does not open a connection only to be refused.
func TestLeaseStandbyDoesNotConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standby, app, connects := e.leaseSink(t)
	lease := mustLock(t, e.sink, "p")
	for range 20 {
		mustNotLock(t, standby, "p", "while another sink holds it")
	}
	if got := connects.Load(); got != 0 {
		t.Errorf("a standby refused 20 times opened %d lease connections; want 0", got)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	taken := mustLock(t, standby, "p")
	if got := connects.Load(); got != 1 {
		t.Errorf("a standby that took the lease opened %d lease connections; want 1", got)
	}
	if got := pgtest.Sessions(t, app); got != 1 {
		t.Errorf("%d sessions of %s while it holds a lease; want 1", got, app)
	}
	if err := taken.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// When the lease connection ends, every lease on it is lost at once, and
// the next TryLock connects anew.
func TestLeasesLostWithTheirSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sink, app, connects := e.leaseSink(t)
	names := []string{"a", "b", "c"}
	var held []projections.Lease
	for _, name := range names {
		held = append(held, mustLock(t, sink, name))
	}
	pid := holder(t, sink, "a")
	pgtest.TerminateSessions(t, app)
	for i, l := range held {
		select {
		case <-l.Lost():
		case <-time.After(20 * time.Second):
			t.Fatalf("lease %s not lost 20s after its session was terminated", names[i])
		}
	}
	renewed := make([]projections.Lease, len(names))
	for i, name := range names {
		renewed[i] = mustLock(t, sink, name)
	}
	for i, name := range names {
		// A lost lease is released already: releasing it must leave the
		// lease taken since alone.
		if err := held[i].Release(t.Context()); err != nil {
			t.Errorf("Release of lost lease %s: %v", name, err)
		}
		mustNotLock(t, e.sink, name, "after a lost lease of the same name was released")
	}
	held = renewed
	if got := holder(t, sink, "c"); got == pid {
		t.Errorf("LeaseHolder(c) = %d after the session ended; want a new session", got)
	}
	if got := connects.Load(); got != 2 {
		t.Errorf("%d lease connections opened; want 2: one before the termination and one after", got)
	}
	for _, l := range held {
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.WaitForSessions(t, app, 0)
}
