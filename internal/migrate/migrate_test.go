package migrate_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/internal/migrate"
	"github.com/stratadev/strata/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

// set returns a Set of the given files, each name → SQL, in migrations/.
func set(files map[string]string) migrate.Set {
	fsys := fstest.MapFS{}
	for name, sql := range files {
		fsys["migrations/"+name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return migrate.Set{Component: "test", Files: fsys, Table: "test_migrations"}
}

func expander(schema string) func(string) string {
	quoted := pgx.Identifier{schema}.Sanitize()
	return func(sql string) string { return strings.ReplaceAll(sql, "{{schema}}", quoted) }
}

func TestBadFileNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"1.sql", "a_b.sql", "0_zero.sql", "000_zero.sql", "-1_neg.sql", "+1_plus.sql", "1_.sql", "_a.sql",
		"1_a.txt", "1_a", "1_a b.sql", "1_a'b.sql", "1e3_exp.sql", "0x1_hex.sql", "1234567890_long.sql",
	} {
		s := set(map[string]string{"001_good.sql": "SELECT 1", name: "SELECT 1"})
		if ms, err := s.Migrations(expander("x")); err == nil {
			t.Errorf("Migrations with a file %q = %d migrations, nil; want an error", name, len(ms))
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("Migrations with a file %q: the error does not name it: %v", name, err)
		}
	}
	for _, name := range []string{"1_a.sql", "001_a.sql", "12_with_underscores.sql", "7_With-Dash2.sql"} {
		s := set(map[string]string{name: "SELECT 1"})
		if ms, err := s.Migrations(expander("x")); err != nil || len(ms) != 1 {
			t.Errorf("Migrations with a file %q = %d migrations, %v; want 1, nil", name, len(ms), err)
		}
	}
	s := set(map[string]string{"001_a.sql": "SELECT 1", "002_dir.sql/x": "SELECT 1"})
	if _, err := s.Migrations(expander("x")); err == nil {
		t.Error("Migrations with a directory 002_dir.sql = nil error; want one")
	}
}

// Duplicate versions are refused before anything touches the database.
func TestDuplicateVersions(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	s := set(map[string]string{"1_a.sql": "CREATE TABLE {{schema}}.a ()", "001_b.sql": "CREATE TABLE {{schema}}.b ()"})
	_, err := s.Migrations(expander(schema))
	if err == nil || !strings.Contains(err.Error(), "001_a") || !strings.Contains(err.Error(), "001_b") {
		t.Errorf("Migrations with versions 1 and 001 = %v; want an error naming both", err)
	}
	if res, err := s.Run(t.Context(), pool, schema, expander(schema), quiet); err == nil {
		t.Errorf("Run with versions 1 and 001 = %+v, nil; want an error", res)
	}
	if v, err := s.Version(t.Context(), pool, schema, expander(schema)); err == nil {
		t.Errorf("Version after a refused Run = %d, nil; want an error: the table should not exist", v)
	}
}

// Versions are ordered by number: 2, 9, 10, not "10", "2", "9".
func TestOrderByNumber(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	s := set(map[string]string{
		"10_ten.sql":   "INSERT INTO {{schema}}.log (v) VALUES (10)",
		"2_two.sql":    "INSERT INTO {{schema}}.log (v) VALUES (2)",
		"9_nine.sql":   "INSERT INTO {{schema}}.log (v) VALUES (9)",
		"1_create.sql": "CREATE TABLE {{schema}}.log (id serial PRIMARY KEY, v int NOT NULL)",
	})
	ms, err := s.Migrations(expander(schema))
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, m := range ms {
		versions = append(versions, m.Version)
	}
	if !slices.Equal(versions, []int{1, 2, 9, 10}) {
		t.Errorf("Migrations versions = %v; want [1 2 9 10]", versions)
	}
	res, err := s.Run(t.Context(), pool, schema, expander(schema), quiet)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"001_create", "002_two", "009_nine", "010_ten"}; !slices.Equal(res.Applied, want) || res.Version != 10 {
		t.Errorf("Run = %+v; want Applied %v, Version 10", res, want)
	}
	rows, err := pool.Query(t.Context(), expander(schema)("SELECT v FROM {{schema}}.log ORDER BY id"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int32{2, 9, 10}) {
		t.Errorf("the migrations ran in the order %v; want [2 9 10]", got)
	}
}

// A failing migration rolls back the whole run: the migrations before it in
// the same run are undone and the version stays where it was.
func TestFailingMigrationRollsBack(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	first := map[string]string{"001_a.sql": "CREATE TABLE {{schema}}.a (n int)"}
	if res, err := set(first).Run(ctx, pool, schema, expander(schema), quiet); err != nil || res.Version != 1 {
		t.Fatalf("first Run = %+v, %v; want Version 1", res, err)
	}
	more := map[string]string{
		"001_a.sql":   first["001_a.sql"],
		"002_b.sql":   "CREATE TABLE {{schema}}.b (n int); INSERT INTO {{schema}}.a VALUES (1)",
		"003_bad.sql": "CREATE TABLE {{schema}}.c (n int); SELEC 1",
	}
	res, err := set(more).Run(ctx, pool, schema, expander(schema), quiet)
	if err == nil || !strings.Contains(err.Error(), "003_bad") {
		t.Fatalf("Run with a bad migration = %+v, %v; want an error naming 003_bad", res, err)
	}
	if res.Applied != nil || res.Version != 0 {
		t.Errorf("Run with a bad migration returned %+v with its error; want the zero Result", res)
	}
	if v, err := set(more).Version(ctx, pool, schema, expander(schema)); err != nil || v != 1 {
		t.Errorf("Version after the failed Run = %d, %v; want 1", v, err)
	}
	var tables []string
	rows, err := pool.Query(ctx, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "test_migrations"}; !slices.Equal(tables, want) {
		t.Errorf("tables after the failed Run = %v; want %v", tables, want)
	}
	var n int
	if err := pool.QueryRow(ctx, expander(schema)("SELECT count(*) FROM {{schema}}.a")).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows in a after the failed Run = %d, %v; want 0", n, err)
	}
}

// Runs from several pools and goroutines at once apply each migration
// exactly once. The first migration waits on a table lock the test holds
// until every run is waiting, so that all of them overlap.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	exp := expander(schema)
	if _, err := pool.Exec(ctx, exp("CREATE TABLE {{schema}}.gate ()")); err != nil {
		t.Fatal(err)
	}
	gate, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Rollback(context.Background())
	if _, err := gate.Exec(ctx, exp("LOCK TABLE {{schema}}.gate IN ACCESS EXCLUSIVE MODE")); err != nil {
		t.Fatal(err)
	}
	s := set(map[string]string{
		"001_runs.sql": "LOCK TABLE {{schema}}.gate IN ACCESS SHARE MODE; CREATE TABLE {{schema}}.runs (v int NOT NULL); INSERT INTO {{schema}}.runs VALUES (1)",
		"002_more.sql": "INSERT INTO {{schema}}.runs VALUES (2)",
	})

	const pools, perPool = 4, 3
	app := "migrate-" + schema[max(0, len(schema)-16):]
	type outcome struct {
		res migrate.Result
		err error
	}
	out := make(chan outcome, pools*perPool)
	var wg sync.WaitGroup
	for range pools {
		p := pgtest.NamedPool(t, app)
		for range perPool {
			wg.Go(func() {
				res, err := s.Run(ctx, p, schema, exp, quiet)
				out <- outcome{res, err}
			})
		}
	}
	pgtest.WaitForLockWaiters(t, app, pools*perPool)
	if err := gate.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(out)
	var applied []string
	for o := range out {
		if o.err != nil {
			t.Error(o.err)
			continue
		}
		if o.res.Version != 2 {
			t.Errorf("a run returned Version %d; want 2", o.res.Version)
		}
		applied = append(applied, o.res.Applied...)
	}
	if want := []string{"001_runs", "002_more"}; !slices.Equal(applied, want) {
		t.Errorf("the runs applied %v between them; want %v once", applied, want)
	}
	var runs []int32
	rows, err := pool.Query(ctx, exp("SELECT v FROM {{schema}}.runs ORDER BY v"))
	if err != nil {
		t.Fatal(err)
	}
	if runs, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(runs, []int32{1, 2}) {
		t.Errorf("runs holds %v; want [1 2]: each migration once", runs)
	}
}

// The SQL a tool outside the runner would apply, prelude + migration +
// record, leaves the schema where Run finds nothing to do.
func TestPreludeAndRecord(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	exp := expander(schema)
	s := set(map[string]string{"001_a.sql": "CREATE TABLE {{schema}}.a ()", "002_b.sql": "CREATE TABLE {{schema}}.b ()"})
	ms, err := s.Migrations(exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, s.Prelude(exp)+ms[0].SQL+";"+s.Record(exp, ms[0])); err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(ctx, pool, schema, exp, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []string{"002_b"}) || res.Version != 2 {
		t.Errorf("Run after applying 001 by hand = %+v; want Applied [002_b], Version 2", res)
	}
}
