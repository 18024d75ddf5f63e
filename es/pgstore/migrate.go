package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded SQL file, migrations/NNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
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
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
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

// Migrate creates or upgrades the store's schema. It applies the embedded
// migrations that are not yet recorded in the schema_migrations table, in
// order and in one transaction. It is idempotent, and safe to call from many
// processes at once: a transaction-level advisory lock serializes them.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The lock key is derived from the schema so that stores in
		// different schemas migrate independently.
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
			"strata/pgstore/migrate/"+s.cfg.Schema); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, s.expand(`CREATE SCHEMA IF NOT EXISTS {{schema}}`)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, s.expand(`CREATE TABLE IF NOT EXISTS {{schema}}.schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, s.expand(`SELECT version FROM {{schema}}.schema_migrations`))
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range ms {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			if _, err := tx.Exec(ctx, s.expand(m.sql)); err != nil {
				return fmt.Errorf("apply %03d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, s.expand(`INSERT INTO {{schema}}.schema_migrations (version, name) VALUES ($1, $2)`),
				m.version, m.name); err != nil {
				return fmt.Errorf("record %03d_%s: %w", m.version, m.name, err)
			}
			s.cfg.Logger.InfoContext(ctx, "pgstore: applied migration",
				slog.String("schema", s.cfg.Schema), slog.Int("version", m.version), slog.String("name", m.name))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate schema %s: %w", s.cfg.Schema, err)
	}
	return nil
}
