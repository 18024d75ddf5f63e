package pgstore_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

var quietLog = slog.New(slog.DiscardHandler)

func TestMigrateResult(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
	if v, err := s.SchemaVersion(t.Context()); err == nil {
		t.Errorf("SchemaVersion before Migrate = %d, nil; want an error", v)
	}
	res, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []string{"001_events"}) || res.Version != 1 {
		t.Errorf("first Migrate = %+v; want Applied [001_events], Version 1", res)
	}
	res, err = s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != 1 {
		t.Errorf("second Migrate = %+v; want Applied empty, Version 1", res)
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != 1 {
		t.Errorf("SchemaVersion = %d, %v; want 1", v, err)
	}
	if n := countMigrations(t, pool, schema); n != 1 {
		t.Errorf("schema_migrations holds %d rows; want 1", n)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	// A schema that does not exist yet: Migrate creates it.
	schema += "_new"
	t.Cleanup(func() {
		pgtest.Admin(t).Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	const n = 8
	start := make(chan struct{})
	results := make(chan pgstore.MigrateResult, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
			<-start
			res, err := s.Migrate(t.Context())
			results <- res
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var applied []string
	for res := range results {
		applied = append(applied, res.Applied...)
		if res.Version != 1 {
			t.Errorf("a Migrate returned Version %d; want 1", res.Version)
		}
	}
	if !slices.Equal(applied, []string{"001_events"}) {
		t.Errorf("the concurrent Migrates applied %v between them; want [001_events] once", applied)
	}
	if n := countMigrations(t, pool, schema); n != 1 {
		t.Errorf("schema_migrations holds %d rows; want 1", n)
	}
}

// MigrateTx commits and rolls back with the caller's transaction, and a
// concurrent Migrate waits for it, then finds the migration recorded.
func TestMigrateTx(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.MigrateTx(ctx, tx); err != nil || res.Version != 1 || len(res.Applied) != 1 {
		t.Fatalf("MigrateTx = %+v, %v; want one migration applied, Version 1", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); err == nil {
		t.Errorf("SchemaVersion after a rolled-back MigrateTx = %d, nil; want an error", v)
	}

	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if res, err := s.MigrateTx(ctx, tx); err != nil || !slices.Equal(res.Applied, []string{"001_events"}) {
		t.Fatalf("MigrateTx = %+v, %v; want Applied [001_events]", res, err)
	}
	// A migrator on another pool, marked so that the test can see it wait.
	app := "migrate-tx-" + schema[max(0, len(schema)-16):]
	other := pgtest.NamedPool(t, app)
	done := make(chan error, 1)
	var res pgstore.MigrateResult
	go func() {
		var err error
		res, err = pgstore.New(other, pgstore.Config{Schema: schema, Logger: quietLog}).Migrate(ctx)
		done <- err
	}()
	pgtest.WaitForLockWaiters(t, app, 1)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != 1 {
		t.Errorf("Migrate after the committed MigrateTx = %+v; want Applied empty, Version 1", res)
	}
	if n := countMigrations(t, pool, schema); n != 1 {
		t.Errorf("schema_migrations holds %d rows; want 1", n)
	}
}

func TestMigrateTxRefusesRepeatableRead(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
	tx, err := pool.BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if res, err := s.MigrateTx(t.Context(), tx); err == nil || !strings.Contains(err.Error(), "read committed") {
		t.Errorf("MigrateTx in a REPEATABLE READ transaction = %+v, %v; want an error asking for read committed", res, err)
	}
}

// The exported SQL, run by another tool, leaves the schema as Migrate
// would, and recorded: Migrate afterwards applies nothing.
func TestMigrationSQL(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ms, err := pgstore.MigrationSQL(schema)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Version != 1 || ms[0].Name != "events" {
		t.Fatalf("MigrationSQL = %+v; want one migration, 1 \"events\"", ms)
	}
	if strings.Contains(ms[0].SQL, "{{") {
		t.Errorf("MigrationSQL left a placeholder in the SQL")
	}
	if !strings.Contains(ms[0].SQL, pgx.Identifier{schema}.Sanitize()+".events") {
		t.Errorf("MigrationSQL does not name the quoted schema %s", pgx.Identifier{schema}.Sanitize())
	}
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
	own, err := s.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 1 || own[0] != ms[0] {
		t.Errorf("Store.Migrations differs from MigrationSQL of its schema")
	}
	if _, err := pool.Exec(t.Context(), ms[0].SQL); err != nil {
		t.Fatalf("run the exported SQL: %v", err)
	}
	res, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != 1 {
		t.Errorf("Migrate after the exported SQL = %+v; want Applied empty, Version 1", res)
	}
	if _, err := s.Append(t.Context(), "s-1", es.NoStream, ev("T", `{"n":1}`)); err != nil {
		t.Errorf("Append to a store set up by the exported SQL: %v", err)
	}

	if _, err := pgstore.MigrationSQL(strings.Repeat("s", 64)); err == nil {
		t.Error("MigrationSQL accepted a 64-byte schema name")
	}
	def, err := pgstore.MigrationSQL("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def[0].SQL, `"strata".events`) {
		t.Error(`MigrationSQL("") does not use the default schema "strata"`)
	}
}

func countMigrations(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
