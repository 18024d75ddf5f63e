package pgprocess

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

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
CREATE INDEX IF NOT EXISTS {{instances_created}} ON {{instances}} (process, created_at DESC, id);
CREATE INDEX IF NOT EXISTS {{instances_status}} ON {{instances}} (process, status, created_at DESC, id);
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
	handled_step bigint,
	PRIMARY KEY (process, id, step, seq)
);
CREATE INDEX IF NOT EXISTS {{outbox_pending}} ON {{outbox}} (process, next_attempt_at, id, step, seq) WHERE status = 'pending';
ALTER TABLE {{outbox}} ADD COLUMN IF NOT EXISTS handled_step bigint;
CREATE INDEX IF NOT EXISTS {{outbox_unhandled}} ON {{outbox}} (process, id) WHERE status = 'rejected' AND handled_step IS NULL;
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

// indexes are the runtime's indexes; the DDL names each {{name}} without
// its "process_" prefix. Instances are listed newest first, of one status
// or all, through instances_created and instances_status; the stuck ones
// are found from the pending outbox rows and deadlines, the rejected
// commands no decision handled, and the failed instances.
var indexes = []string{
	OutboxTable + "_pending", DeadlinesTable + "_pending",
	InstancesTable + "_created", InstancesTable + "_status", OutboxTable + "_unhandled",
}

// tables holds the quoted names of the tables, and the channel of their
// schema's notifications.
type tables struct {
	schema, instances, outbox, deadlines, counters string
	channel                                        string
}

func tablesOf(tx *pgsink.Tx) tables {
	return tables{
		schema:    pgx.Identifier{tx.Table(InstancesTable)[0]}.Sanitize(),
		instances: tx.Table(InstancesTable).Sanitize(),
		outbox:    tx.Table(OutboxTable).Sanitize(),
		deadlines: tx.Table(DeadlinesTable).Sanitize(),
		counters:  tx.Table(CountersTable).Sanitize(),
		channel:   channelName(tx.Table(InstancesTable)[0]),
	}
}

// channelName is the notification channel of the process managers of a
// read schema: a transaction that adds commands or deadlines sends the
// process manager's name there, and the runners of that process manager,
// in every process, look for work. It is at most 63 bytes, the limit of an
// identifier; schemas whose names only differ after that share a channel,
// which costs spurious wake-ups and nothing else.
func channelName(schema string) string {
	c := "strata_processes." + schema
	if len(c) > 63 {
		c = c[:63]
		for !utf8.ValidString(c) {
			c = c[:len(c)-1]
		}
	}
	return c
}

func (t tables) expand(sql string) string {
	k := expandKey{t, sql}
	if s, ok := expanded.Load(k); ok {
		return s.(string)
	}
	s := strings.NewReplacer("{{instances}}", t.instances, "{{outbox}}", t.outbox,
		"{{deadlines}}", t.deadlines, "{{counters}}", t.counters).Replace(sql)
	expanded.Store(k, s)
	return s
}

// expanded holds the statements expand returned, by tables and text:
// making a replacer for every statement cost 5% of a dispatcher's CPU.
// The statements are constants, or built from constants and the
// configuration, so there are as many as statements times schemas.
var expanded sync.Map // expandKey → string

type expandKey struct {
	t   tables
	sql string
}

// ddl returns the statements that create the tables t names and their
// indexes.
func (t tables) ddl() string {
	var r []string
	for _, ix := range indexes {
		r = append(r, "{{"+strings.TrimPrefix(ix, "process_")+"}}", pgx.Identifier{ix}.Sanitize())
	}
	return strings.NewReplacer(r...).Replace(t.expand(ddl))
}

// MigrationSQL returns the statements [Migrate] runs to create schema
// (the sink's read schema), if it is missing, and the runtime's tables
// there, for teams that manage their schema with their own tools. They
// are idempotent, and record no version: Migrate finds the tables there
// and does nothing.
func MigrationSQL(schema string) string {
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	return "CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{schema}.Sanitize() + ";" +
		tables{instances: q(InstancesTable), outbox: q(OutboxTable), deadlines: q(DeadlinesTable), counters: q(CountersTable)}.ddl()
}

// Migrate creates the runtime's tables in the sink's read schema (and the
// schema), if they are not there; the sink's own tables come from
// pgsink.Sink.Migrate. It is safe to call from several processes at once.
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
		// The indexes that came last stand for the steps that added them
		// (outbox_unhandled for the handled_step column).
		var present bool
		names := []string{t.instances, t.outbox, t.deadlines, t.counters}
		for _, ix := range indexes {
			names = append(names, tx.Table(ix).Sanitize())
		}
		err := tx.QueryRow(ctx, `SELECT bool_and(pg_catalog.to_regclass(n) IS NOT NULL) FROM unnest($1::text[]) n`, names).Scan(&present)
		if err != nil || present {
			return err
		}
		// A read schema of its own may not be there yet. CREATE SCHEMA IF
		// NOT EXISTS would need the right to create schemas even when it
		// is there: ask first.
		var missing bool
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.to_regnamespace($1) IS NULL`, t.schema).Scan(&missing); err != nil {
			return err
		}
		if missing {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+t.schema); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, t.ddl())
		return err
	})
	if err != nil {
		return fmt.Errorf("pgprocess: migrate: %w", err)
	}
	return nil
}
