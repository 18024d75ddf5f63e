package pgsink

import (
	"context"
	"embed"
	"fmt"

	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = migrate.Set{Component: "pgsink", Files: migrationFiles, Table: "pgsink_migrations"}

// Migrate creates or upgrades the sink's tables in its schema. It is
// idempotent and safe to call from many processes at once. Its bookkeeping
// table, pgsink_migrations, is its own, so the schema can be shared with
// pgstore.
func (s *Sink) Migrate(ctx context.Context) error {
	return migrations.Run(ctx, s.pool, s.cfg.Schema, s.expand, s.cfg.Logger)
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
