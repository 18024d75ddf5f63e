// Package migrate applies a package's embedded SQL migrations to a schema:
// the runner behind pgstore's and pgsink's Migrate, MigrateTx and
// MigrationSQL.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Set is one component's migrations.
type Set struct {
	// Component names the migrations' owner, e.g. "pgstore". It prefixes
	// errors and log messages and is part of the advisory lock key,
	// "strata/<Component>/migrate/<schema>", so that components and schemas
	// migrate independently.
	Component string
	// Files holds the migrations as migrations/NNN_name.sql: NNN is a
	// positive decimal version (any number of digits; versions are ordered
	// by number, not by file name), name is letters, digits, '_' and '-'.
	Files fs.FS
	Table string // Records the applied versions, in the schema.
}

// Migration is one migration with the placeholders of its SQL filled in.
type Migration struct {
	Version int
	Name    string // The file name without version and extension.
	// SQL is the migration's statements. Run executes them in one
	// transaction after Prelude and before Record.
	SQL string
}

// ID is the migration's "NNN_name", as the runner reports it.
func (m Migration) ID() string { return fmt.Sprintf("%03d_%s", m.Version, m.Name) }

// Result is what a run did.
type Result struct {
	// Applied names the migrations applied by this run, "NNN_name", in
	// order; empty when the schema was up to date.
	Applied []string
	// Version is the schema's version afterwards: the highest version
	// recorded in the bookkeeping table.
	Version int
}

// Migrations returns the migrations in set.Files in version order, with
// expand applied to their SQL. It reports malformed file names and
// duplicate versions.
func (set Set) Migrations(expand func(string) string) ([]Migration, error) {
	ms, err := set.read()
	if err != nil {
		return nil, fmt.Errorf("%s: migrations: %w", set.Component, err)
	}
	for i := range ms {
		ms[i].SQL = expand(ms[i].SQL)
	}
	return ms, nil
}

func (set Set) read() ([]Migration, error) {
	entries, err := fs.ReadDir(set.Files, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		v, name, ok := parseName(e.Name())
		if !ok || e.IsDir() {
			return nil, fmt.Errorf("migration file %s: want NNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(set.Files, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortStableFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("two migrations with version %d: %s and %s", ms[i].Version, ms[i-1].ID(), ms[i].ID())
		}
	}
	return ms, nil
}

// parseName splits "NNN_name.sql".
func parseName(file string) (version int, name string, ok bool) {
	base, isSQL := strings.CutSuffix(file, ".sql")
	num, name, cut := strings.Cut(base, "_")
	if !isSQL || !cut || num == "" || name == "" || len(num) > 9 {
		return 0, "", false
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return 0, "", false
		}
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return 0, "", false
		}
	}
	v, err := strconv.Atoi(num)
	if err != nil || v <= 0 {
		return 0, "", false
	}
	return v, name, true
}

// Scripts returns the migrations like [Set.Migrations], each with SQL that
// applies it on its own: [Set.Prelude], the statements, and [Set.Record],
// for teams that run them with a tool of their own.
func (set Set) Scripts(expand func(string) string) ([]Migration, error) {
	ms, err := set.Migrations(expand)
	if err != nil {
		return nil, err
	}
	prelude := set.Prelude(expand)
	for i, m := range ms {
		ms[i].SQL = prelude + "\n\n" + m.SQL + "\n" + set.Record(expand, m) + "\n"
	}
	return ms, nil
}

// Prelude returns the statements that create the schema and the
// bookkeeping table when they are missing, with expand applied.
func (set Set) Prelude(expand func(string) string) string {
	return expand(`CREATE SCHEMA IF NOT EXISTS {{schema}};
CREATE TABLE IF NOT EXISTS {{schema}}.` + set.Table + ` (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`)
}

// Record returns the statement that records m as applied, with expand
// applied.
func (set Set) Record(expand func(string) string, m Migration) string {
	return expand(fmt.Sprintf(`INSERT INTO {{schema}}.%s (version, name) VALUES (%d, '%s');`,
		set.Table, m.Version, strings.ReplaceAll(m.Name, "'", "''")))
}

// Run is [Set.RunTx] in a transaction of its own on pool, committed when
// RunTx succeeds.
func (set Set) Run(ctx context.Context, pool *pgxpool.Pool, schema string, expand func(string) string, logger *slog.Logger) (Result, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("%s: migrate schema %s: begin: %w", set.Component, schema, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	res, err := set.RunTx(ctx, tx, schema, expand, logger)
	if err != nil {
		return Result{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("%s: migrate schema %s: commit: %w", set.Component, schema, err)
	}
	return res, nil
}

// RunTx applies, in tx, the migrations in set.Files that are not yet
// recorded in set.Table, in order, creating the schema and the table when
// needed. expand fills {{schema}} (the quoted schema) and the component's
// other placeholders in the SQL.
//
// It first takes a transaction-level advisory lock keyed by component and
// schema, so a concurrent run waits until tx ends and then finds the
// migrations recorded; tx must therefore use READ COMMITTED isolation (the
// default), in which each statement sees what committed before it: RunTx
// refuses any other. Each migration applied is logged at info level as
// "<component>: applied migration" with the attributes schema, version and
// name.
func (set Set) RunTx(ctx context.Context, tx pgx.Tx, schema string, expand func(string) string, logger *slog.Logger) (Result, error) {
	res, err := set.runTx(ctx, tx, schema, expand, logger)
	if err != nil {
		return Result{}, fmt.Errorf("%s: migrate schema %s: %w", set.Component, schema, err)
	}
	return res, nil
}

func (set Set) runTx(ctx context.Context, tx pgx.Tx, schema string, expand func(string) string, logger *slog.Logger) (Result, error) {
	ms, err := set.Migrations(expand)
	if err != nil {
		return Result{}, err
	}
	var isolation string
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.current_setting('transaction_isolation')`).Scan(&isolation); err != nil {
		return Result{}, fmt.Errorf("read the isolation level: %w", err)
	}
	if isolation != "read committed" {
		return Result{}, fmt.Errorf("the transaction's isolation level is %s: want read committed, so that the migration lock orders concurrent runs", isolation)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
		"strata/"+set.Component+"/migrate/"+schema); err != nil {
		return Result{}, fmt.Errorf("take migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, set.Prelude(expand)); err != nil {
		return Result{}, fmt.Errorf("create %s: %w", set.Table, err)
	}
	rows, err := tx.Query(ctx, expand(`SELECT version FROM {{schema}}.`+set.Table))
	if err != nil {
		return Result{}, fmt.Errorf("read %s: %w", set.Table, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return Result{}, fmt.Errorf("read %s: %w", set.Table, err)
	}
	res := Result{Applied: []string{}}
	for _, m := range ms {
		if slices.Contains(applied, int32(m.Version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return Result{}, fmt.Errorf("apply %s: %w", m.ID(), err)
		}
		if _, err := tx.Exec(ctx, set.Record(expand, m)); err != nil {
			return Result{}, fmt.Errorf("record %s: %w", m.ID(), err)
		}
		res.Applied = append(res.Applied, m.ID())
		logger.InfoContext(ctx, set.Component+": applied migration",
			slog.String("schema", schema), slog.Int("version", m.Version), slog.String("name", m.Name))
	}
	if err := tx.QueryRow(ctx, expand(`SELECT coalesce(max(version), 0) FROM {{schema}}.`+set.Table)).Scan(&res.Version); err != nil {
		return Result{}, fmt.Errorf("read %s: %w", set.Table, err)
	}
	return res, nil
}

// Version returns the highest version recorded in set.Table of the schema,
// 0 when none is. It fails when the table does not exist.
func (set Set) Version(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema string, expand func(string) string) (int, error) {
	var v int
	if err := db.QueryRow(ctx, expand(`SELECT coalesce(max(version), 0) FROM {{schema}}.`+set.Table)).Scan(&v); err != nil {
		return 0, fmt.Errorf("%s: schema version of %s: %w", set.Component, schema, err)
	}
	return v, nil
}
