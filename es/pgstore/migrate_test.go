package pgstore_test

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

var quietLog = slog.New(slog.DiscardHandler)

// The store's migrations, and the version they leave the schema at.
var allMigrations = []string{"001_events", "002_json"}

const latest = 2

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
	if !slices.Equal(res.Applied, allMigrations) || res.Version != latest {
		t.Errorf("first Migrate = %+v; want Applied %v, Version %d", res, allMigrations, latest)
	}
	res, err = s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != latest {
		t.Errorf("second Migrate = %+v; want Applied empty, Version %d", res, latest)
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != latest {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, latest)
	}
	if n := countMigrations(t, pool, schema); n != latest {
		t.Errorf("schema_migrations holds %d rows; want %d", n, latest)
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
		if res.Version != latest {
			t.Errorf("a Migrate returned Version %d; want %d", res.Version, latest)
		}
	}
	if !slices.Equal(applied, allMigrations) {
		t.Errorf("the concurrent Migrates applied %v between them; want %v once", applied, allMigrations)
	}
	if n := countMigrations(t, pool, schema); n != latest {
		t.Errorf("schema_migrations holds %d rows; want %d", n, latest)
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
	defer tx.Rollback(context.Background())
	if res, err := s.MigrateTx(ctx, tx); err != nil || res.Version != latest || len(res.Applied) != latest {
		t.Fatalf("MigrateTx = %+v, %v; want every migration applied, Version %d", res, err, latest)
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
	if res, err := s.MigrateTx(ctx, tx); err != nil || !slices.Equal(res.Applied, allMigrations) {
		t.Fatalf("MigrateTx = %+v, %v; want Applied %v", res, err, allMigrations)
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
	if len(res.Applied) != 0 || res.Version != latest {
		t.Errorf("Migrate after the committed MigrateTx = %+v; want Applied empty, Version %d", res, latest)
	}
	if n := countMigrations(t, pool, schema); n != latest {
		t.Errorf("schema_migrations holds %d rows; want %d", n, latest)
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
	if len(ms) != latest || ms[0].Version != 1 || ms[0].Name != "events" || ms[1].Version != 2 || ms[1].Name != "json" {
		t.Fatalf("MigrationSQL = %+v; want 1 \"events\" and 2 \"json\"", ms)
	}
	for _, m := range ms {
		if strings.Contains(m.SQL, "{{") {
			t.Errorf("MigrationSQL left a placeholder in the SQL of %d", m.Version)
		}
	}
	if !strings.Contains(ms[0].SQL, pgx.Identifier{schema}.Sanitize()+".events") {
		t.Errorf("MigrationSQL does not name the quoted schema %s", pgx.Identifier{schema}.Sanitize())
	}
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
	own, err := s.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(own, ms) {
		t.Errorf("Store.Migrations differs from MigrationSQL of its schema")
	}
	for _, m := range ms {
		if _, err := pool.Exec(t.Context(), m.SQL); err != nil {
			t.Fatalf("run the exported SQL of %d: %v", m.Version, err)
		}
	}
	res, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != latest {
		t.Errorf("Migrate after the exported SQL = %+v; want Applied empty, Version %d", res, latest)
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

// A store created by the first migration, when data was jsonb, is upgraded
// in place: its events, metadata and snapshots read back as the same JSON
// values, and appends (the fast statements and the append function) work on
// the json columns afterwards.
func TestMigrateFromJSONB(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	ms, err := pgstore.MigrationSQL(schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, ms[0].SQL); err != nil {
		t.Fatalf("migration 001: %v", err)
	}
	q := pgx.Identifier{schema}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+q+`.events (event_id, stream_id, stream_version, type, data, metadata)
		VALUES ('0190a4b8-0000-7000-8000-000000000001', 'order-1', 1, 'Placed', '{"z": 1, "a": [true, null, "x"]}', '{"correlation-id": "c-1"}'),
		       ('0190a4b8-0000-7000-8000-000000000002', 'order-1', 2, 'Shipped', '"\u00e9"', '{}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+q+`.snapshots VALUES ('order-1', 2, 'r1', '{"lines": 3}', now())`); err != nil {
		t.Fatal(err)
	}

	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quietLog})
	res, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate from version 1: %v", err)
	}
	if !slices.Equal(res.Applied, []string{"002_json"}) || res.Version != latest {
		t.Errorf("Migrate from version 1 = %+v; want Applied [002_json], Version %d", res, latest)
	}
	for _, col := range []struct{ table, column string }{{"events", "data"}, {"events", "metadata"}, {"snapshots", "data"}} {
		var typ string
		if err := pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 AND column_name = $3`, schema, col.table, col.column).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if typ != "json" {
			t.Errorf("%s.%s is %s after Migrate; want json", col.table, col.column, typ)
		}
	}

	// The fast path (store IDs) and the append function (caller IDs).
	if _, err := s.Append(ctx, "order-1", es.Exact(2), ev("Paid", `{ "amount" : 10 }`)); err != nil {
		t.Fatalf("Append after the upgrade: %v", err)
	}
	withID := ev("Closed", `{}`)
	withID.ID = uuid.MustParse("0190a4b8-0000-7000-8000-000000000004")
	withID.Metadata = es.Metadata{"causation-id": "x"}
	for range 2 { // the second is an idempotent retry
		if _, err := s.Append(ctx, "order-1", es.Exact(3), withID); err != nil {
			t.Fatalf("Append with a caller's ID after the upgrade: %v", err)
		}
	}
	recs, err := s.ReadStream(ctx, "order-1", es.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ, data string
		md        es.Metadata
	}{
		{"Placed", `{"a": [true, null, "x"], "z": 1}`, es.Metadata{"correlation-id": "c-1"}},
		{"Shipped", `"é"`, nil},
		{"Paid", `{ "amount" : 10 }`, nil}, // json keeps the text as it was sent
		{"Closed", `{}`, es.Metadata{"causation-id": "x"}},
	}
	if len(recs) != len(want) {
		t.Fatalf("ReadStream after the upgrade: %d events; want %d", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r.Type != w.typ || string(r.Data) != w.data || !maps.Equal(r.Metadata, w.md) {
			t.Errorf("event %d after the upgrade = %s %s %v; want %s %s %v", i+1, r.Type, r.Data, r.Metadata, w.typ, w.data, w.md)
		}
	}
	snap, err := s.LoadSnapshot(ctx, "order-1")
	if err != nil || string(snap.Data) != `{"lines": 3}` || snap.Version != 2 {
		t.Errorf("LoadSnapshot after the upgrade = %+v, %v; want version 2 with {\"lines\": 3}", snap, err)
	}
	// What is stored can still be queried as JSON in SQL.
	var amount int
	if err := pool.QueryRow(ctx, `SELECT (data->>'amount')::int FROM `+q+`.events WHERE type = 'Paid'`).Scan(&amount); err != nil || amount != 10 {
		t.Errorf("data->>'amount' = %d, %v; want 10", amount, err)
	}
}
