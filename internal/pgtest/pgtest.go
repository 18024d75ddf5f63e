// Package pgtest is the public [pgtest] package plus what only strata's own
// tests use: a goleak check in [Main], and helpers for tests about locks.
//
// A test package calls [Main] from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// `go run ./cmd/withpg -- go test ./...` starts one server for all
// packages (see the Makefile).
//
// [pgtest]: https://pkg.go.dev/github.com/stratadev/strata/es/pgstore/pgtest
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/internal/pgnotify"
)

// EnvURL is the environment variable that names the test server.
const EnvURL = pgtest.EnvURL

// EnvRequire makes tests fail rather than skip, when set to 1, if no
// server can be had. CI=true does the same.
const EnvRequire = pgtest.EnvRequire

// Options tune [NewSchemaWith].
type Options = pgtest.SchemaConfig

// Required reports whether tests must fail, not skip, when a server they
// need cannot be had.
func Required() bool { return pgtest.Required() }

// Main runs the tests of a package: [Run], then exit.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is the public pgtest.Run followed, when the tests passed, by a check
// for leaked goroutines.
func Run(m *testing.M) int {
	code := pgtest.Run(m)
	if code == 0 {
		// A throwaway Elasticsearch started around this run (elastictest.Run)
		// is stopped after it, so its process watcher is still waiting here.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/stratadev/strata/internal/localproc.Start.func1")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			return 1
		}
	}
	return code
}

// URL is pgtest.URL.
func URL(t testing.TB) string { t.Helper(); return pgtest.URL(t) }

// Admin is pgtest.Admin.
func Admin(t testing.TB) *pgxpool.Pool { t.Helper(); return pgtest.Admin(t) }

// NewSchema is pgtest.NewSchema.
func NewSchema(t testing.TB) (*pgxpool.Pool, string) { t.Helper(); return pgtest.NewSchema(t) }

// NewSchemaWith is pgtest.NewSchemaWith.
func NewSchemaWith(t testing.TB, opts Options) (*pgxpool.Pool, string) {
	t.Helper()
	return pgtest.NewSchemaWith(t, opts)
}

// NamedPool returns a pool on the test database whose connections carry
// application name app, so that [WaitForLockWaiters] can find them, with an
// empty search_path like [NewSchema]'s. It is closed when the test ends.
func NamedPool(t testing.TB, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// WaitForLockWaiters waits until n sessions of application app wait for a
// lock, failing the test after 20s.
func WaitForLockWaiters(t testing.TB, app string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		var waiting int
		if err := Admin(t).QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting); err != nil {
			t.Fatalf("wait for %d sessions of %s to wait for a lock: %v", n, app, err)
		}
		if waiting >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d sessions of %s wait for a lock; want %d", waiting, app, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WaitForSessions waits until exactly n sessions of application app are
// connected, failing the test after 20s. It may be called from a cleanup.
func WaitForSessions(t testing.TB, app string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		var sessions int
		if err := Admin(t).QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
			WHERE application_name = $1`, app).Scan(&sessions); err != nil {
			t.Fatalf("wait for %d sessions of %s: %v", n, app, err)
		}
		if sessions == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d sessions of %s; want %d", sessions, app, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ListenerHold holds the reconnections of a pool's listening connection
// (see internal/pgnotify): its first connection goes through, each later
// one sends on Held, which should have room for one value, and waits until
// Release is closed.
type ListenerHold struct {
	Held    chan struct{}
	Release chan struct{}
}

// ListenerPool returns a pool on the test database whose connections carry
// an application name unique to the test, with an empty search_path like
// [NewSchema]'s and a limit of 24 connections, and the application name of
// its listening connection. When hold is not nil, it holds that
// connection's reconnections. The pool is closed when the test ends.
func ListenerPool(t testing.TB, hold *ListenerHold) (*pgxpool.Pool, string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	app := "strata-test-" + hex.EncodeToString(b[:])
	listener := pgnotify.AppName(app)
	cfg.MaxConns = 24
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	if hold != nil {
		var connects atomic.Int32
		cfg.ConnConfig.ValidateConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
			if pc.ParameterStatus("application_name") != listener || connects.Add(1) == 1 {
				return nil
			}
			hold.Held <- struct{}{}
			select {
			case <-hold.Release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, listener
}

// TerminateSessions terminates the sessions of application app.
func TerminateSessions(t testing.TB, app string) {
	t.Helper()
	if _, err := Admin(t).Exec(t.Context(), `SELECT pg_catalog.pg_terminate_backend(pid)
		FROM pg_catalog.pg_stat_activity WHERE application_name = $1`, app); err != nil {
		t.Fatalf("terminate the sessions of %s: %v", app, err)
	}
}

// Sessions counts the sessions of application app.
func Sessions(t testing.TB, app string) int {
	t.Helper()
	var n int
	if err := Admin(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_stat_activity
		WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatalf("count the sessions of %s: %v", app, err)
	}
	return n
}
