// Package pgtest gives tests a real PostgreSQL database.
//
// A test package calls [Main] from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test asks for a schema of its own:
//
//	pool, schema := pgtest.NewSchema(t)
//
// The server is the one named by TEST_DATABASE_URL. When that is unset, Main
// starts a throwaway server (see internal/localpg) for the test binary;
// `go run ./internal/cmd/withpg -- go test ./...` starts one server for all
// packages instead. When no server can be had (no URL, no PostgreSQL
// binaries), the tests that need one skip with one line saying how to get
// one, and the others run; under CI=true, or with STRATA_REQUIRE_SERVERS=1,
// they fail instead.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/internal/localpg"
)

// EnvURL is the environment variable that names the test server.
const EnvURL = "TEST_DATABASE_URL"

// EnvRequire makes tests fail rather than skip, when set to 1, if no
// server can be had. CI=true does the same.
const EnvRequire = "STRATA_REQUIRE_SERVERS"

// Required reports whether tests must fail, not skip, when a server they
// need cannot be had.
func Required() bool {
	return os.Getenv(EnvRequire) == "1" || os.Getenv("CI") == "true"
}

// startErr is why no test server could be started, if so.
var startErr error

var (
	adminOnce sync.Once
	admin     *pgxpool.Pool
	adminErr  error
)

// Main runs the tests of a package: it starts a throwaway server when
// TEST_DATABASE_URL is unset, runs the tests, stops the server, checks for
// leaked goroutines and exits.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// Run is [Main] without the exit: it returns the exit code, so that a
// TestMain can set up other servers around it.
func Run(m *testing.M) int { return run(m) }

func run(m *testing.M) int {
	var srv *localpg.Server
	if os.Getenv(EnvURL) == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var err error
		srv, err = localpg.Start(ctx, localpg.Options{})
		cancel()
		switch {
		case err != nil && Required():
			fmt.Fprintln(os.Stderr, err)
			return 1
		case err != nil:
			startErr = err
			fmt.Fprintf(os.Stderr, "pgtest: skipping the tests that need PostgreSQL: %s\n", firstLine(err))
			ExcludeExamples("no PostgreSQL server")
		default:
			os.Setenv(EnvURL, srv.URL())
		}
	}
	code := m.Run()
	if admin != nil {
		admin.Close()
	}
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop the test server: %v\n", err)
		}
	}
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

// ExcludeExamples keeps m.Run from running the package's Example functions,
// which cannot skip themselves, and says so in one line naming why. It adds
// ^Example to -test.skip; call it before m.Run.
func ExcludeExamples(why string) {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.skip")
	if f == nil {
		return
	}
	skip := "^Example"
	if v := f.Value.String(); v != "" {
		skip = v + "|" + skip
	}
	if err := f.Value.Set(skip); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cannot exclude the examples: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "skipping the examples: %s\n", why)
}

// URL returns TEST_DATABASE_URL, skipping the test when no server could be
// started (see the package documentation) and failing it when the variable
// is unset otherwise (Main sets it).
func URL(t testing.TB) string {
	t.Helper()
	if startErr != nil {
		t.Skip("no PostgreSQL server: " + firstLine(startErr))
	}
	url := os.Getenv(EnvURL)
	if url == "" {
		t.Fatalf("%s is not set: call pgtest.Main from TestMain", EnvURL)
	}
	return url
}

// Admin returns a pool on the test database with the server's default
// settings, shared by the tests of the binary. Do not close it.
func Admin(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := URL(t)
	adminOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			adminErr = err
			return
		}
		cfg.MaxConns = 4
		admin, adminErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	if adminErr != nil {
		t.Fatalf("pgtest: connect to %s: %v", EnvURL, adminErr)
	}
	return admin
}

// Options tune [NewSchemaWith].
type Options struct {
	// MaxConns is the pool's connection limit. Defaults to 16.
	MaxConns int32
}

// NewSchema creates an empty schema for the test, with a name unique to it,
// and returns a pool whose search_path is empty, so any SQL that does not
// name its schema fails. The pool is closed and the schema dropped when the
// test ends.
func NewSchema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	return NewSchemaWith(t, Options{})
}

// NewSchemaWith is [NewSchema] with options.
func NewSchemaWith(t testing.TB, opts Options) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	adm := Admin(t)
	schema := schemaName(t.Name())
	if _, err := adm.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := adm.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})

	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop: cleanups run last-in first-out
	return pool, schema
}

// schemaName turns a test name into a unique, valid schema name of at most
// 63 bytes: "t_" + the name's letters and digits + a random suffix.
func schemaName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 44 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String()
}

func firstLine(err error) string { return strings.SplitN(err.Error(), "\n", 2)[0] }

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
