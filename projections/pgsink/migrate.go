package pgsink

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

type migration struct {
	version int
	name    string
	sql     string
}

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
	return ms, nil
}

// Migrate creates or upgrades the sink's tables in its schema. It is
// idempotent and safe to call from many processes at once. Its bookkeeping
// table, pgsink_migrations, is its own, so the schema can be shared with
// pgstore.
func (s *Sink) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("pgsink: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
			"strata/pgsink/migrate/"+s.cfg.Schema); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, s.expand(`CREATE SCHEMA IF NOT EXISTS {{schema}}`)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, s.expand(`CREATE TABLE IF NOT EXISTS {{schema}}.pgsink_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)); err != nil {
			return fmt.Errorf("create pgsink_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, s.expand(`SELECT version FROM {{schema}}.pgsink_migrations`))
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read pgsink_migrations: %w", err)
		}
		for _, m := range ms {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			if _, err := tx.Exec(ctx, s.expand(m.sql)); err != nil {
				return fmt.Errorf("apply %03d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, s.expand(`INSERT INTO {{schema}}.pgsink_migrations (version, name) VALUES ($1, $2)`),
				m.version, m.name); err != nil {
				return fmt.Errorf("record %03d_%s: %w", m.version, m.name, err)
			}
			s.cfg.Logger.InfoContext(ctx, "pgsink: applied migration",
				slog.String("schema", s.cfg.Schema), slog.Int("version", m.version), slog.String("name", m.name))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgsink: migrate schema %s: %w", s.cfg.Schema, err)
	}
	return nil
}

// SchemaVersion returns the version of the last migration [Sink.Migrate]
// applied to the sink's schema: 0 when it has applied none.
func (s *Sink) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, s.expand(`SELECT coalesce(max(version), 0) FROM {{schema}}.pgsink_migrations`)).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("pgsink: schema version of %s: %w", s.cfg.Schema, err)
	}
	return v, nil
}
