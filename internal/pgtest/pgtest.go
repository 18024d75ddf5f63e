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
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
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
