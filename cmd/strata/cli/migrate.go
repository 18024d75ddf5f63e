package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

func (a *app) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the event store and checkpoint tables",
		Long: `Create or upgrade the event store and checkpoint tables in --schema.

Migrate is idempotent and safe to run from several processes at once; it
prints each migration it applies, or that the schema is up to date. With
--esdb-url only the checkpoint tables are created: the events live in
EventStoreDB.`,
		Example: fmt.Sprintf(`  %[1]s migrate --database-url postgres://app@localhost:5432/app
  STRATA_DATABASE_URL=postgres://app@db/app %[1]s migrate --schema billing`, a.cfg.Name),
		Args: noArgs,
		RunE: a.runMigrate,
	}
}

type migrationResult struct {
	Component string   `json:"component"` // "events" or "checkpoints"
	Table     string   `json:"table"`     // where the applied versions are recorded
	Applied   []string `json:"applied"`   // migrations applied now
	Version   int      `json:"version"`   // the schema's version afterwards
}

func (a *app) runMigrate(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	schema := a.flags.schema
	var results []migrationResult

	rec := &migrationRecorder{}
	if c.pg != nil {
		st := pgstoreWithLogger(c, rec.logger())
		if _, err := st.Migrate(ctx); err != nil {
			return err
		}
		v, err := schemaVersion(ctx, c, schema, "schema_migrations")
		if err != nil {
			return err
		}
		results = append(results, migrationResult{Component: "events", Table: "schema_migrations", Applied: rec.take(), Version: v})
	}
	sink := sinkWithLogger(c, a.settings(), rec.logger())
	if _, err := sink.Migrate(ctx); err != nil {
		return err
	}
	v, err := sink.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	results = append(results, migrationResult{Component: "checkpoints", Table: "pgsink_migrations", Applied: rec.take(), Version: v})

	if a.format() == formatJSON {
		return a.writeJSON(map[string]any{"database": c.url, "schema": schema, "migrations": results})
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
	return nil
}

func schemaVersion(ctx context.Context, c *conn, schema, table string) (int, error) {
	var v int
	err := c.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+pgx.Identifier{schema, table}.Sanitize()).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", table, err)
	}
	return v, nil
}

// migrationRecorder collects the "applied migration" records that
// pgstore's and pgsink's Migrate log.
type migrationRecorder struct {
	mu      sync.Mutex
	applied []string
}

func (r *migrationRecorder) logger() *slog.Logger { return slog.New(recorderHandler{r}) }

func (r *migrationRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.applied
	r.applied = nil
	return out
}

type recorderHandler struct{ r *migrationRecorder }

func (h recorderHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recorderHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recorderHandler) WithGroup(string) slog.Handler            { return h }
func (h recorderHandler) Handle(_ context.Context, rec slog.Record) error {
	var (
		version int64
		name    string
	)
	rec.Attrs(func(at slog.Attr) bool {
		switch at.Key {
		case "version":
			version = at.Value.Int64()
		case "name":
			name = at.Value.String()
		}
		return true
	})
	if name == "" {
		return nil
	}
	h.r.mu.Lock()
	h.r.applied = append(h.r.applied, fmt.Sprintf("%03d_%s", version, name))
	h.r.mu.Unlock()
	return nil
}
