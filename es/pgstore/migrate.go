package pgstore

import (
	"context"
	"embed"

	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = migrate.Set{Component: "pgstore", Files: migrationFiles, Table: "schema_migrations"}

// Migrate creates or upgrades the store's schema. It applies the embedded
// migrations that are not yet recorded in the schema_migrations table, in
// order and in one transaction. It is idempotent, and safe to call from many
// processes at once: a transaction-level advisory lock serializes them.
func (s *Store) Migrate(ctx context.Context) error {
	return migrations.Run(ctx, s.pool, s.cfg.Schema, s.expand, s.cfg.Logger)
}
