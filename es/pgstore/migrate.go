package pgstore

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable is the table, in the store's schema, that records the
// versions of the migrations applied to it.
const MigrationsTable = "schema_migrations"

var migrations = migrate.Set{Component: "pgstore", Files: migrationFiles, Table: MigrationsTable}

// MigrateResult is what [Store.Migrate] or [Store.MigrateTx] did.
type MigrateResult struct {
	// Applied names the migrations applied by this call, "NNN_name" (e.g.
	// "001_events"), in order; empty when the schema was up to date.
	Applied []string
	// Version is the schema's version afterwards: the highest version
	// recorded in schema_migrations.
	Version int
}

// Migration is one of the store's migrations, for tools that manage the
// schema themselves (golang-migrate, goose, atlas); see [MigrationSQL].
type Migration struct {
	Version int    // 1, 2, …: applied in this order.
	Name    string // e.g. "events".
	// SQL is a script that applies the migration on its own: it creates
	// the schema and schema_migrations when they are missing, runs the
	// migration's statements and records the version in schema_migrations,
	// so that a later [Store.Migrate] does not apply it again. Run it in
	// one transaction (psql --single-transaction, or a tool's up
	// migration).
	SQL string
}

// Migrate creates or upgrades the store's schema. It applies the embedded
// migrations that are not yet recorded in the schema_migrations table, in
// order and in one transaction, and returns which it applied and the
// resulting version. It is idempotent, and safe to call from many processes
// at once: a transaction-level advisory lock serializes them.
func (s *Store) Migrate(ctx context.Context) (MigrateResult, error) {
	res, err := migrations.Run(ctx, s.pool, s.cfg.Schema, s.expand, s.cfg.Logger)
	return MigrateResult(res), err
}

// MigrateTx is [Store.Migrate] inside the caller's transaction, so that the
// schema changes commit or roll back with the caller's own (for instance a
// projection's tables created beside the store's). tx must use READ
// COMMITTED isolation, PostgreSQL's default; MigrateTx refuses any other.
//
// MigrateTx first takes the transaction-level advisory lock that
// serializes migrators of this schema, and it is held until tx ends:
// concurrent Migrate and MigrateTx calls on the schema wait until the
// caller commits or rolls back, then find the migrations recorded (or not)
// and apply only what is missing. Keep tx short after MigrateTx.
func (s *Store) MigrateTx(ctx context.Context, tx pgx.Tx) (MigrateResult, error) {
	res, err := migrations.RunTx(ctx, tx, s.cfg.Schema, s.expand, s.cfg.Logger)
	return MigrateResult(res), err
}

// SchemaVersion returns the version of the last migration applied to the
// store's schema, as recorded in schema_migrations: 0 when none is. It
// fails when the schema has never been migrated (the table does not exist).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	return migrations.Version(ctx, s.pool, s.cfg.Schema, s.expand)
}

// Migrations returns the store's migrations, in order, with its schema
// filled in: what [Store.Migrate] applies. See [MigrationSQL].
func (s *Store) Migrations() ([]Migration, error) {
	ms, err := migrations.Scripts(s.expand)
	if err != nil {
		return nil, err
	}
	out := make([]Migration, len(ms))
	for i, m := range ms {
		out[i] = Migration(m)
	}
	return out, nil
}

// MigrationSQL returns the migrations of a store on schema ("" for
// [SchemaDefault]), in order, each a script with the schema (and the
// store's notification channel and lock keys, which derive from it) filled
// in, for teams that manage the schema with their own tool. It fails when
// schema is invalid (see [Config.Validate]).
func MigrationSQL(schema string) ([]Migration, error) {
	cfg := Config{Schema: schema}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newStore(cfg.withDefaults()).Migrations()
}
