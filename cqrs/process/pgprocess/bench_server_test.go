package pgprocess_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es/pgstore"
	pgstest "github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/projections/pgsink"
)

// benchServer is a PostgreSQL server a benchmark starts for itself: with
// the test settings (fsync, synchronous_commit and full_page_writes off),
// or with production durability, where every commit waits for a WAL flush.
type benchServer struct {
	pool    *pgxpool.Pool
	schemas atomic.Int64
}

func startBenchServer(b *testing.B, durable bool) *benchServer {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var settings map[string]string
	if durable {
		settings = map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
	}
	if os.Getenv(envStatements) == "1" {
		settings = maps.Clone(settings)
		if settings == nil {
			settings = map[string]string{}
		}
		settings["shared_preload_libraries"] = "pg_stat_statements"
	}
	srv, err := pgstest.Start(ctx, pgstest.ServerConfig{Settings: settings})
	if err != nil {
		b.Fatalf("start a server: %v", err)
	}
	b.Cleanup(func() { srv.Stop() })
	cfg, err := pgxpool.ParseConfig(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 24
	cfg.ConnConfig.RuntimeParams["search_path"] = "" // SQL that names no schema fails
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if os.Getenv(envStatements) == "1" {
		logStatements(b, pool)
	}
	return &benchServer{pool: pool}
}

// env returns a new schema with the store's, the sink's and the runtime's
// tables, and the test domain's registry and bus, all with their default
// configuration.
func (s *benchServer) env(b *testing.B) env {
	b.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("bench_%d", s.schemas.Add(1))
	if _, err := s.pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	store := pgstore.New(s.pool, pgstore.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	sink := pgsink.New(s.pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := sink.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if err := pgprocess.Migrate(ctx, sink); err != nil {
		b.Fatal(err)
	}
	reg := newRegistry()
	return env{pool: s.pool, store: store, sink: sink, reg: reg, bus: newBus(store, reg)}
}

// envStatements, set to 1, makes every benchmark server log the 20
// statements that took the most time on it when the benchmark ends (with
// pg_stat_statements, which the server must have).
const envStatements = "STRATA_BENCH_STATEMENTS"

func logStatements(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	if _, err := pool.Exec(context.Background(), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public"); err != nil {
		b.Fatalf("%s: %v", envStatements, err)
	}
	b.Cleanup(func() {
		rows, err := pool.Query(context.Background(), `SELECT calls, total_exec_time, total_exec_time / calls,
				left(regexp_replace(query, '\s+', ' ', 'g'), 160)
			FROM public.pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20`)
		if err != nil {
			b.Errorf("%s: %v", envStatements, err)
			return
		}
		b.Logf("%8s %10s %8s  %s", "calls", "total ms", "mean ms", "statement")
		var (
			calls       int64
			total, mean float64
			query       string
		)
		_, err = pgx.ForEachRow(rows, []any{&calls, &total, &mean, &query}, func() error {
			b.Logf("%8d %10.1f %8.3f  %s", calls, total, mean, query)
			return nil
		})
		if err != nil {
			b.Errorf("%s: %v", envStatements, err)
		}
	})
}
