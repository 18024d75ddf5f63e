package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections/pgsink"
)

func (a *app) migrateCommand() *cobra.Command {
	var printSQL bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the event store, checkpoint and process manager tables",
		Long: `Create or upgrade the event store and checkpoint tables in --schema, and
the tables of process managers (package pgprocess) in --read-schema
(default: --schema).

Migrate is idempotent and safe to run from several processes at once; it
prints each migration it applies, or that the schema is up to date. With
--esdb-url only the checkpoint tables are created: the events live in
EventStoreDB.

With --print it connects to nothing and prints the SQL of every migration
instead, with the schema filled in, for teams that manage their schema with
golang-migrate, goose, atlas or psql. Each migration records its version in
schema_migrations (the event store) or pgsink_migrations (the checkpoints)
of the schema, so that a later 'migrate' does not apply it again.`,
		Example: fmt.Sprintf(`  %[1]s migrate --database-url postgres://app@localhost:5432/app
  STRATA_DATABASE_URL=postgres://app@db/app %[1]s migrate --schema billing
  %[1]s migrate --print --schema billing | psql --single-transaction -v ON_ERROR_STOP=1 "$DATABASE_URL"`, a.cfg.Name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if printSQL {
				return a.printMigrations()
			}
			return a.runMigrate(cmd)
		},
	}
	cmd.Flags().BoolVar(&printSQL, "print", false, "print the SQL of the migrations instead of applying them")
	return cmd
}

type migrationResult struct {
	Component string   `json:"component"` // "events", "checkpoints" or "processes"
	Table     string   `json:"table"`     // where the applied versions are recorded (processes: none, the instances table)
	Applied   []string `json:"applied"`   // migrations applied now
	Version   int      `json:"version"`   // the schema's version afterwards
}

func (a *app) runMigrate(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	schema := a.flags.schema
	var results []migrationResult
	if c.pg != nil {
		res, err := c.pg.Migrate(ctx)
		if err != nil {
			return err
		}
		results = append(results, migrationResult{Component: "events", Table: pgstore.MigrationsTable, Applied: res.Applied, Version: res.Version})
	}
	res, err := c.sink.Migrate(ctx)
	if err != nil {
		return err
	}
	results = append(results, migrationResult{Component: "checkpoints", Table: pgsink.MigrationsTable, Applied: res.Applied, Version: res.Version})
	// The process managers' tables: idempotent DDL, without versions.
	if err := pgprocess.Migrate(ctx, c.sink); err != nil {
		return err
	}
	processes := migrationResult{Component: "processes", Table: pgprocess.InstancesTable, Applied: []string{}}

	if a.format() == formatJSON {
		return a.writeJSON(map[string]any{"database": c.url, "schema": schema, "migrations": append(results, processes)})
	}
	w := a.stdout()
	for _, r := range results {
		for _, m := range r.Applied {
			fmt.Fprintf(w, "%s: applied %s in schema %s\n", r.Component, m, schema)
		}
		if len(r.Applied) == 0 {
			fmt.Fprintf(w, "%s: schema %s is up to date (version %d)\n", r.Component, schema, r.Version)
		} else {
			fmt.Fprintf(w, "%s: schema %s is now at version %d\n", r.Component, schema, r.Version)
		}
	}
	fmt.Fprintf(w, "processes: the process manager tables are in schema %s\n", a.settings().ReadSchema)
	return nil
}

// migrationSQL is one migration as migrate --print shows it.
type migrationSQL struct {
	Component string `json:"component"` // "events", "checkpoints" or "processes"
	Table     string `json:"table"`     // where the script records its version; empty for processes
	Version   int    `json:"version"`
	Name      string `json:"name"`
	SQL       string `json:"sql"`
}

// printMigrations prints the SQL of the event store's migrations (unless the
// events live in EventStoreDB) and then the sink's, without connecting.
func (a *app) printMigrations() error {
	s := a.settings()
	var all []migrationSQL
	if s.ESDBURL == "" {
		ms, err := pgstore.MigrationSQL(s.Schema)
		if err != nil {
			return usagef("%v", err)
		}
		for _, m := range ms {
			all = append(all, migrationSQL{"events", pgstore.MigrationsTable, m.Version, m.Name, m.SQL})
		}
	}
	ms, err := pgsink.MigrationSQL(s.Schema)
	if err != nil {
		return usagef("%v", err)
	}
	for _, m := range ms {
		all = append(all, migrationSQL{"checkpoints", pgsink.MigrationsTable, m.Version, m.Name, m.SQL})
	}
	all = append(all, migrationSQL{Component: "processes", Name: "process_managers", SQL: pgprocess.MigrationSQL(s.ReadSchema)})
	if a.format() == formatJSON {
		return a.writeJSON(all)
	}
	w := a.stdout()
	fmt.Fprintf(w, `-- The migrations '%[1]s migrate' applies to schema %[2]s, in order.
--
-- Apply them in one transaction, for instance:
--   %[1]s migrate --print --schema %[2]s | psql --single-transaction -v ON_ERROR_STOP=1 "$DATABASE_URL"
-- or copy each into a migration of golang-migrate, goose or atlas.
--
-- Each migration creates the schema and its bookkeeping table when they are
-- missing, and records its version there: %[2]s.%[3]s for the event
-- store, %[2]s.%[4]s for the checkpoints. '%[1]s migrate' (and
-- Migrate in Go) reads those tables and applies only the migrations not
-- recorded, so it never re-applies these. The script itself is not
-- idempotent: it is for a schema that has none of them yet. The process
-- managers' tables come last: their statements are idempotent.
`, a.cfg.Name, strings.NewReplacer("\n", " ", "\r", " ").Replace(s.Schema), pgstore.MigrationsTable, pgsink.MigrationsTable)
	for _, m := range all {
		if m.Table == "" {
			fmt.Fprintf(w, "\n-- %s: %s (idempotent, not recorded)\n\n%s", m.Component, m.Name, m.SQL)
		} else {
			fmt.Fprintf(w, "\n-- %s: %03d_%s (recorded in %s)\n\n%s", m.Component, m.Version, m.Name, m.Table, m.SQL)
		}
		if !strings.HasSuffix(m.SQL, "\n") {
			fmt.Fprintln(w)
		}
	}
	return nil
}
