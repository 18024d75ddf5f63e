// Package migrate applies a package's embedded SQL migrations to a schema:
// the runner behind pgstore's and pgsink's Migrate.
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
	Files     fs.FS  // Holds the migrations as migrations/NNN_name.sql.
	Table     string // Records the applied versions, in the schema.
}

// migration is one embedded SQL file, migrations/NNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the migrations in fsys in version order.
func migrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("two migrations with version %d", ms[i].version)
		}
	}
	return ms, nil
}

// Run applies the migrations in set.Files that are not yet recorded in
// set.Table, in order and in one transaction, creating schema and the table
// when needed. expand fills {{schema}} (the quoted schema) and the
// component's other placeholders in the SQL. A transaction-level advisory
// lock serializes concurrent runs. Each migration applied is logged at info
// level as "<component>: applied migration" with the attributes schema,
// version and name.
func (set Set) Run(ctx context.Context, pool *pgxpool.Pool, schema string, expand func(string) string, logger *slog.Logger) error {
	ms, err := migrations(set.Files)
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", set.Component, err)
	}
	table := "{{schema}}." + set.Table
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
			"strata/"+set.Component+"/migrate/"+schema); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, expand(`CREATE SCHEMA IF NOT EXISTS {{schema}}`)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, expand(`CREATE TABLE IF NOT EXISTS `+table+` (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)); err != nil {
			return fmt.Errorf("create %s: %w", set.Table, err)
		}
		rows, err := tx.Query(ctx, expand(`SELECT version FROM `+table))
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read %s: %w", set.Table, err)
		}
		for _, m := range ms {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			if _, err := tx.Exec(ctx, expand(m.sql)); err != nil {
				return fmt.Errorf("apply %03d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, expand(`INSERT INTO `+table+` (version, name) VALUES ($1, $2)`),
				m.version, m.name); err != nil {
				return fmt.Errorf("record %03d_%s: %w", m.version, m.name, err)
			}
			logger.InfoContext(ctx, set.Component+": applied migration",
				slog.String("schema", schema), slog.Int("version", m.version), slog.String("name", m.name))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: migrate schema %s: %w", set.Component, schema, err)
	}
	return nil
}
