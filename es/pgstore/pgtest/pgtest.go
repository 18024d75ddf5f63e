// Package pgtest gives tests a real PostgreSQL database: a throwaway server
// started from the PostgreSQL binaries installed on the machine, and a fresh
// schema per test that is dropped when the test ends. It is for the tests of
// applications built on strata as much as for strata's own.
//
// A test package calls [Main] (or [Run]) from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test asks for a schema of its own:
//
//	pool, schema := pgtest.NewSchema(t)
//	store := pgstore.New(pool, pgstore.Config{Schema: schema})
//
// The server is the one named by TEST_DATABASE_URL, which may be any
// PostgreSQL 15 or later the tests may create schemas on. When that is
// unset, Main starts a throwaway server for the test binary (see [Start]):
// it needs the server binaries (on Debian and Ubuntu, apt-get install
// postgresql; initdb and postgres on PATH, or under /usr/lib/postgresql).
// To share one server between the packages of one `go test ./...` run, start
// it once and pass its URL down, as this repository's `make test` does:
//
//	go run github.com/stratadev/strata/cmd/withpg -- go test ./...
//
// When no server can be had (no URL, no binaries), the tests that need one
// skip with one line saying why, and the others run; under CI=true, or with
// STRATA_REQUIRE_SERVERS=1, they fail instead.
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
)

// EnvURL is the environment variable that names the test server.
const EnvURL = "TEST_DATABASE_URL"

// EnvRequire makes tests fail rather than skip, when set to 1, if no
// server can be had. CI=true does the same.
const EnvRequire = "STRATA_REQUIRE_SERVERS"

// StartTimeoutDefault bounds the start of the throwaway server in [Run].
const StartTimeoutDefault = 2 * time.Minute

// SchemaMaxConnsDefault is the connection limit of a [NewSchema] pool.
const SchemaMaxConnsDefault = 16

// Required reports whether tests must fail, not skip, when a server they
// need cannot be had.
func Required() bool {
	return os.Getenv(EnvRequire) == "1" || os.Getenv("CI") == "true"
}

var (
	// startErr is why no test server could be started, if so.
	startErr error

	adminMu  sync.Mutex
	admin    *pgxpool.Pool
	adminURL string
)

// Main runs the tests of a package with [Run] and exits with its code.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run starts a throwaway server when TEST_DATABASE_URL is unset, runs the
// tests, stops the server and returns the exit code, so that a TestMain can
// do more around it. When no server can be started, it prints one line and
// runs the tests anyway: those that need a server skip (or fail, see
// [Required]).
func Run(m *testing.M) int {
	var srv *Server
	if os.Getenv(EnvURL) == "" {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeoutDefault)
		var err error
		srv, err = Start(ctx, ServerConfig{})
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
	adminMu.Lock()
	if admin != nil {
		admin.Close()
		admin = nil
	}
	adminMu.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop the test server: %v\n", err)
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

// URL returns TEST_DATABASE_URL. It skips the test when no server could be
// started (see the package documentation), and fails it when the variable
// is unset and [Run] did not run.
func URL(t testing.TB) string {
	t.Helper()
	if startErr != nil {
		t.Skip("no PostgreSQL server: " + firstLine(startErr))
	}
	url := os.Getenv(EnvURL)
	if url == "" {
		t.Fatalf("%s is not set: set it to a PostgreSQL server, or call pgtest.Main from TestMain", EnvURL)
	}
	return url
}

// Admin returns a pool on the test database with the server's default
// settings, shared by the tests of the binary and closed by [Run]. Do not
// close it.
func Admin(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := URL(t)
	adminMu.Lock()
	defer adminMu.Unlock()
	if admin != nil && adminURL == url {
		return admin
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", EnvURL, err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", EnvURL, err)
	}
	if admin != nil {
		admin.Close()
	}
	admin, adminURL = pool, url
	return admin
}

// SchemaConfig configures [NewSchemaWith]. The zero value works.
type SchemaConfig struct {
	// MaxConns is the pool's connection limit. Defaults to
	// SchemaMaxConnsDefault (16).
	MaxConns int32
}

// NewSchema creates an empty schema for the test, with a name unique to it,
// and returns a pool whose search_path is empty, so any SQL that does not
// name its schema fails. The pool is closed and the schema dropped when the
// test ends.
func NewSchema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	return NewSchemaWith(t, SchemaConfig{})
}

// NewSchemaWith is [NewSchema] with a configuration.
func NewSchemaWith(t testing.TB, cfg SchemaConfig) (*pgxpool.Pool, string) {
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

	pcfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	if pcfg.MaxConns <= 0 {
		pcfg.MaxConns = SchemaMaxConnsDefault
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
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
