package peerbench_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

// The servers the comparison runs on. Each is named by its environment
// variable, or else started by the test binary when a test or benchmark
// first needs it (pgtest.Start) and stopped when the binary ends.
const (
	// EnvFastURL names a server tuned for speed: fsync, synchronous_commit
	// and full_page_writes off (pgtest's defaults). Defaults to
	// TEST_DATABASE_URL, which `make test` and `make bench` set to such a
	// server, else a throwaway server of the test binary.
	EnvFastURL = "BENCH_FAST_URL"
	// EnvDurableURL names a server with production settings: fsync,
	// synchronous_commit and full_page_writes on. Defaults to a throwaway
	// server of the test binary.
	EnvDurableURL = "BENCH_DURABLE_URL"
)

// server is one PostgreSQL server of the comparison.
type server struct {
	name     string            // "fast" or "durable": the sub-benchmark's name
	env      []string          // environment variables that may name it, in order
	settings map[string]string // what pgtest.Start passes; also checked on a given server

	once     sync.Once
	url      string
	err      error          // why there is no server
	mismatch error          // why the server is not what its name says
	srv      *pgtest.Server // nil when the server was given
	admin    *pgxpool.Pool
}

var (
	fast = &server{
		name: "fast",
		env:  []string{EnvFastURL, pgtest.EnvURL},
		settings: map[string]string{
			"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
		},
	}
	durable = &server{
		name: "durable",
		env:  []string{EnvDurableURL},
		settings: map[string]string{
			"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
		},
	}
	servers = []*server{durable, fast}
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, s := range servers {
		s.close()
	}
	if code == 0 {
		// A throwaway server's process watcher ends with the server.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/stratadev/strata/internal/localproc.Start.func1")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// pool returns a pool on the server's postgres database, starting the
// server on first use. It skips tb when no server can be had and none is
// required (pgtest.Required), and fails a benchmark on a server given by
// URL whose settings are not those of its name; tests do not mind.
func (s *server) pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	s.once.Do(s.start)
	if s.err != nil {
		if pgtest.Required() {
			tb.Fatalf("%s server: %v", s.name, s.err)
		}
		tb.Skipf("no %s PostgreSQL server: %v", s.name, s.err)
	}
	if _, bench := tb.(*testing.B); bench && s.mismatch != nil {
		tb.Fatalf("%s server: %v", s.name, s.mismatch)
	}
	return s.admin
}

func (s *server) start() {
	ctx, cancel := context.WithTimeout(context.Background(), pgtest.StartTimeoutDefault)
	defer cancel()
	for _, name := range s.env {
		if s.url = os.Getenv(name); s.url != "" {
			break
		}
	}
	if s.url == "" {
		srv, err := pgtest.Start(ctx, pgtest.ServerConfig{Settings: s.settings})
		if err != nil {
			s.err = fmt.Errorf("start: %w", err)
			return
		}
		s.srv, s.url = srv, srv.URL()
	}
	cfg, err := pgxpool.ParseConfig(s.url)
	if err != nil {
		s.err = fmt.Errorf("parse its URL: %w", err)
		return
	}
	cfg.MaxConns = 4
	if s.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		s.err = fmt.Errorf("connect: %w", err)
		return
	}
	// A server given by URL must be what its name says, or the table
	// would compare the wrong things.
	for _, name := range slices.Sorted(maps.Keys(s.settings)) {
		var got string
		if err := s.admin.QueryRow(ctx, "SELECT pg_catalog.current_setting($1)", name).Scan(&got); err != nil {
			s.err = fmt.Errorf("read setting %s: %w", name, err)
			return
		}
		if want := s.settings[name]; got != want {
			s.mismatch = fmt.Errorf("%s is %s, want %s", name, got, want)
			return
		}
	}
}

func (s *server) close() {
	if s.admin != nil {
		s.admin.Close()
	}
	if s.srv != nil {
		if err := s.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "peerbench: stop the %s server: %v\n", s.name, err)
		}
	}
}

// newSchema creates an empty schema on the server, dropped when tb ends, and
// returns its name and the connection settings of a pool whose search_path
// is that schema, or empty when searchPath is false (so that unqualified SQL
// fails).
func (s *server) newSchema(tb testing.TB, prefix string, searchPath bool) (string, *pgxpool.Config) {
	tb.Helper()
	admin := s.pool(tb)
	var suffix [6]byte
	rand.Read(suffix[:])
	schema := prefix + "_" + hex.EncodeToString(suffix[:])
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatalf("create schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(s.url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = 16
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	if searchPath {
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	return schema, cfg
}
