package pgsink_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if v, err := sink.SchemaVersion(t.Context()); err == nil {
		t.Errorf("SchemaVersion before Migrate = %d, nil; want an error", v)
	}
	for i := range 2 {
		res, err := sink.Migrate(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"001_projections"}
		if i > 0 {
			want = []string{}
		}
		if !slices.Equal(res.Applied, want) || res.Version != 1 {
			t.Errorf("Migrate #%d = %+v; want Applied %v, Version 1", i+1, res, want)
		}
		if v, err := sink.SchemaVersion(t.Context()); err != nil || v != 1 {
			t.Errorf("SchemaVersion after Migrate = %d, %v; want 1", v, err)
		}
	}
}

func TestMigrateTx(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	for _, commit := range []bool{false, true} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := sink.MigrateTx(ctx, tx); err != nil || !slices.Equal(res.Applied, []string{"001_projections"}) {
			t.Fatalf("MigrateTx = %+v, %v; want Applied [001_projections]", res, err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, err := sink.SchemaVersion(ctx); err != nil || v != 1 {
		t.Errorf("SchemaVersion after a committed MigrateTx = %d, %v; want 1", v, err)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := sink.MigrateTx(ctx, tx); err == nil {
		t.Error("MigrateTx in a SERIALIZABLE transaction succeeded; want an error")
	}
}

// The exported SQL, run by another tool, is recorded: Migrate afterwards
// applies nothing, and the sink works.
func TestMigrationSQL(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ms, err := pgsink.MigrationSQL(schema)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Version != 1 || ms[0].Name != "projections" {
		t.Fatalf("MigrationSQL = %+v; want one migration, 1 \"projections\"", ms)
	}
	if strings.Contains(ms[0].SQL, "{{") || !strings.Contains(ms[0].SQL, pgx.Identifier{schema}.Sanitize()+".projection_checkpoints") {
		t.Errorf("MigrationSQL did not fill in the schema:\n%s", ms[0].SQL)
	}
	if _, err := pool.Exec(t.Context(), ms[0].SQL); err != nil {
		t.Fatalf("run the exported SQL: %v", err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	res, err := sink.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Version != 1 {
		t.Errorf("Migrate after the exported SQL = %+v; want Applied empty, Version 1", res)
	}
	if _, err := pgsink.MigrationSQL(strings.Repeat("s", 64)); err == nil {
		t.Error("MigrationSQL accepted a 64-byte schema name")
	}
}
