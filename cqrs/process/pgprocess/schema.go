package pgprocess

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections/pgsink"
)

// Table names, in the sink's read schema (see pgsink.Config.ReadSchema).
// Every process manager of the schema shares them; their rows name their
// process.
const (
	InstancesTable = "process_instances"
	OutboxTable    = "process_outbox"
	DeadlinesTable = "process_deadlines"
	CountersTable  = "process_counters"
)

// Instance statuses.
const (
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// Outbox statuses.
const (
	CommandPending    = "pending"
	CommandDispatched = "dispatched"
	CommandRejected   = "rejected"
)

// Deadline statuses.
const (
	DeadlinePending   = "pending"
	DeadlineFired     = "fired"
	DeadlineCancelled = "cancelled"
	DeadlineReplaced  = "replaced"
	DeadlineDropped   = "dropped"
)

const ddl = `
CREATE TABLE IF NOT EXISTS {{instances}} (
	process text NOT NULL,
	id text NOT NULL,
	state jsonb,
	status text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
	step bigint NOT NULL,
	last_event_commit bigint,
	last_event_prepare bigint,
	last_event_type text,
	correlation_id text,
	traceparent text,
	tracestate text,
	error text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (process, id)
);
CREATE TABLE IF NOT EXISTS {{outbox}} (
	process text NOT NULL,
	id text NOT NULL,
	step bigint NOT NULL,
	seq int NOT NULL,
	command_id text NOT NULL,
	command_type text NOT NULL,
	command jsonb NOT NULL,
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dispatched', 'rejected')),
	attempts int NOT NULL DEFAULT 0,
	last_error text,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	correlation_id text,
	causation_id text,
	traceparent text,
	tracestate text,
	created_at timestamptz NOT NULL DEFAULT now(),
	dispatched_at timestamptz,
	PRIMARY KEY (process, id, step, seq)
);
CREATE INDEX IF NOT EXISTS {{outbox_pending}} ON {{outbox}} (process, next_attempt_at, id, step, seq) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS {{deadlines}} (
	process text NOT NULL,
	id text NOT NULL,
	name text NOT NULL,
	step bigint NOT NULL,
	due_at timestamptz NOT NULL,
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'fired', 'cancelled', 'replaced', 'dropped')),
	outcome text,
	created_at timestamptz NOT NULL DEFAULT now(),
	closed_at timestamptz,
	PRIMARY KEY (process, id, name, step)
);
CREATE INDEX IF NOT EXISTS {{deadlines_pending}} ON {{deadlines}} (process, due_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS {{counters}} (
	process text PRIMARY KEY,
	uncorrelated bigint NOT NULL DEFAULT 0,
	ignored bigint NOT NULL DEFAULT 0,
	last_skipped_commit bigint,
	last_skipped_prepare bigint,
	last_skipped_type text
);
`

// tables holds the quoted names of the tables.
type tables struct {
	instances, outbox, deadlines, counters string
}

func tablesOf(tx *pgsink.Tx) tables {
	return tables{
		instances: tx.Table(InstancesTable).Sanitize(),
		outbox:    tx.Table(OutboxTable).Sanitize(),
		deadlines: tx.Table(DeadlinesTable).Sanitize(),
		counters:  tx.Table(CountersTable).Sanitize(),
	}
}

func (t tables) expand(sql string) string {
	return strings.NewReplacer("{{instances}}", t.instances, "{{outbox}}", t.outbox,
		"{{deadlines}}", t.deadlines, "{{counters}}", t.counters).Replace(sql)
}

// Migrate creates the runtime's tables in the sink's read schema, if they
// are not there; the sink's own tables come from pgsink.Sink.Migrate. It
// is safe to call from several processes at once.
func Migrate(ctx context.Context, sink *pgsink.Sink) error {
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		// Serialize concurrent migrations: CREATE ... IF NOT EXISTS races.
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('strata process migrate'))`); err != nil {
			return err
		}
		t := tablesOf(tx)
		// Skip the DDL when everything is there: CREATE INDEX takes a lock
		// on its table even when the index exists, which would make a
		// migration wait for (and deadlock with) running runners.
		var present bool
		err := tx.QueryRow(ctx, `SELECT bool_and(pg_catalog.to_regclass(n) IS NOT NULL) FROM unnest($1::text[]) n`,
			[]string{t.instances, t.outbox, t.deadlines, t.counters,
				tx.Table(OutboxTable + "_pending").Sanitize(), tx.Table(DeadlinesTable + "_pending").Sanitize()}).Scan(&present)
		if err != nil || present {
			return err
		}
		sql := strings.NewReplacer(
			"{{outbox_pending}}", pgx.Identifier{OutboxTable + "_pending"}.Sanitize(),
			"{{deadlines_pending}}", pgx.Identifier{DeadlinesTable + "_pending"}.Sanitize(),
		).Replace(t.expand(ddl))
		_, err = tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgprocess: migrate: %w", err)
	}
	return nil
}
