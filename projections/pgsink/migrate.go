package pgsink

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable is the table, in the sink's schema, that records the
// versions of the migrations applied to it. It is the sink's own, so the
// schema can be shared with pgstore.
const MigrationsTable = "pgsink_migrations"

var migrations = migrate.Set{Component: "pgsink", Files: migrationFiles, Table: MigrationsTable}

// MigrateResult is what [Sink.Migrate] or [Sink.MigrateTx] did.
type MigrateResult struct {
	// Applied names the migrations applied by this call, "NNN_name" (e.g.
	// "001_projections"), in order; empty when the schema was up to date.
	Applied []string
	// Version is the schema's version afterwards: the highest version
	// recorded in pgsink_migrations.
	Version int
}

// Migration is one of the sink's migrations, for tools that manage the
// schema themselves (golang-migrate, goose, atlas); see [MigrationSQL].
type Migration struct {
	Version int    // 1, 2, …: applied in this order.
	Name    string // e.g. "projections".
	// SQL is a script that applies the migration on its own: it creates
	// the schema and pgsink_migrations when they are missing, runs the
	// migration's statements and records the version in
	// pgsink_migrations, so that a later [Sink.Migrate] does not apply it
	// again. Run it in one transaction (psql --single-transaction, or a
	// tool's up migration).
	SQL string
}

// Migrate creates or upgrades the sink's tables in its schema: it applies
// the embedded migrations that are not yet recorded in pgsink_migrations,
// in order and in one transaction, and returns which it applied and the
// resulting version. It is idempotent, and safe to call from many processes
// at once: a transaction-level advisory lock serializes them.
func (s *Sink) Migrate(ctx context.Context) (MigrateResult, error) {
	res, err := migrations.Run(ctx, s.pool, s.cfg.Schema, s.expand, s.cfg.Logger)
	return MigrateResult(res), err
}

// MigrateTx is [Sink.Migrate] inside the caller's transaction, so that the
// sink's tables commit or roll back with the caller's own. tx must use READ
// COMMITTED isolation, PostgreSQL's default; MigrateTx refuses any other.
//
// MigrateTx first takes the transaction-level advisory lock that
// serializes migrators of this schema, and it is held until tx ends:
// concurrent Migrate and MigrateTx calls on the schema wait until the
// caller commits or rolls back, then find the migrations recorded (or not)
// and apply only what is missing. Keep tx short after MigrateTx.
func (s *Sink) MigrateTx(ctx context.Context, tx pgx.Tx) (MigrateResult, error) {
	res, err := migrations.RunTx(ctx, tx, s.cfg.Schema, s.expand, s.cfg.Logger)
	return MigrateResult(res), err
}

// SchemaVersion returns the version of the last migration applied to the
// sink's schema, as recorded in pgsink_migrations: 0 when none is. It fails
// when the schema has never been migrated (the table does not exist).
func (s *Sink) SchemaVersion(ctx context.Context) (int, error) {
	return migrations.Version(ctx, s.pool, s.cfg.Schema, s.expand)
}

// Migrations returns the sink's migrations, in order, with its schema
// filled in: what [Sink.Migrate] applies. See [MigrationSQL].
func (s *Sink) Migrations() ([]Migration, error) {
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

// MigrationSQL returns the migrations of a sink on schema ("" for
// [SchemaDefault]), in order, each a script with the schema filled in, for
// teams that manage the schema with their own tool. It fails when schema is
// invalid (see [Config.Validate]).
func MigrationSQL(schema string) ([]Migration, error) {
	cfg := Config{Schema: schema}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Sink{cfg: cfg, schema: pgx.Identifier{cfg.Schema}.Sanitize()}
	return s.Migrations()
}

// EnsureMigrated is [Sink.Migrate] for a caller that needs the tables and
// not the result: a sink that keeps its checkpoints here (elasticsink's
// Keeper).
func (s *Sink) EnsureMigrated(ctx context.Context) error {
	_, err := s.Migrate(ctx)
	return err
}
