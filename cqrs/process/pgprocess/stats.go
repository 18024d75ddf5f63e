package pgprocess

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections/pgsink"
)

// ErrNotFound means a process instance has no row.
var ErrNotFound = errors.New("pgprocess: process instance not found")

// Defaults for [StuckRule].
const (
	StuckGraceDefault    = time.Minute
	StuckAttemptsDefault = 5
)

// StuckRule says when an instance is stuck: it waits for something that
// is not coming without someone's help. An instance is stuck when
//
//   - its status is failed (its state no longer decodes, Decide failed, or
//     it decided a command whose type is not registered); or
//   - one of its commands is pending and has failed Attempts times or more
//     (a transient error that keeps coming back: the runtime retries it
//     for ever); or
//   - one of its commands was rejected and no decision handled the
//     rejection (the instance had completed or failed by then, or failed
//     on it); or
//   - one of its deadlines is pending and was due more than Grace ago, on
//     the database's clock (no runner fires the deadlines of its process
//     manager).
//
// The first that applies, in that order, is the reason given.
type StuckRule struct {
	// Grace is how long past its due time a pending deadline may be before
	// its instance counts as stuck. Running runners fire a due deadline
	// within Config.PollInterval. Defaults to 1 minute.
	Grace time.Duration
	// Attempts is how many failed attempts of a pending command make its
	// instance stuck. At the default backoff (100ms doubling), 5 attempts
	// take about 1.5s. Defaults to 5.
	Attempts int
}

// Validate reports every problem with r at once.
func (r StuckRule) Validate() error {
	var errs []error
	if r.Grace < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: StuckRule.Grace is %v; want 0 (default) or more", r.Grace))
	}
	if r.Attempts < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: StuckRule.Attempts is %d; want 0 (default) or more", r.Attempts))
	}
	return errors.Join(errs...)
}

func (r StuckRule) withDefaults() StuckRule {
	r.Grace = cmp.Or(r.Grace, StuckGraceDefault)
	r.Attempts = cmp.Or(r.Attempts, StuckAttemptsDefault)
	return r
}

// stuckSQL is the reason instance i is stuck under [StuckRule], or NULL:
// the one place the rule is written down. $2 is Grace in microseconds and
// $3 Attempts.
const stuckSQL = `coalesce(
	CASE WHEN i.status = 'failed' THEN 'failed: ' || coalesce(i.error, 'no error recorded') END,
	(SELECT pg_catalog.format('command %s failed %s times: %s', o.command_type, o.attempts, coalesce(o.last_error, ''))
		FROM {{outbox}} o WHERE o.process = i.process AND o.id = i.id AND o.status = 'pending' AND o.attempts >= $3
		ORDER BY o.step, o.seq LIMIT 1),
	(SELECT pg_catalog.format('command %s was rejected and no decision handled it: %s', o.command_type, coalesce(o.last_error, ''))
		FROM {{outbox}} o WHERE o.process = i.process AND o.id = i.id AND o.status = 'rejected' AND o.handled_step IS NULL
		ORDER BY o.step, o.seq LIMIT 1),
	(SELECT pg_catalog.format('deadline %s overdue since %s', d.name,
			pg_catalog.to_char(d.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
		FROM {{deadlines}} d WHERE d.process = i.process AND d.id = i.id AND d.status = 'pending'
			AND d.due_at < now() - $2::bigint * interval '1 microsecond'
		ORDER BY d.due_at LIMIT 1))`

// stuckCandidates are the IDs of the instances of process $1 that may be
// stuck, found through the partial indexes rather than a scan of every
// instance; stuckSQL decides.
const stuckCandidates = `SELECT id FROM {{outbox}} WHERE process = $1 AND status = 'pending' AND attempts >= $3
	UNION SELECT id FROM {{outbox}} WHERE process = $1 AND status = 'rejected' AND handled_step IS NULL
	UNION SELECT id FROM {{deadlines}} WHERE process = $1 AND status = 'pending'
		AND due_at < now() - $2::bigint * interval '1 microsecond'
	UNION SELECT id FROM {{instances}} WHERE process = $1 AND status = 'failed'`

// Stats counts the rows of one process manager.
type Stats struct {
	Running, Completed, Failed int64
	// Stuck counts the instances stuck under the default [StuckRule],
	// failed ones included.
	Stuck int64
	// Uncorrelated counts the events of handled types that correlated to
	// no instance; Ignored the events for instances that were no longer
	// running. LastSkipped is the latest of either, if any.
	Uncorrelated, Ignored int64
	LastSkipped           *EventRef
	// PendingCommands are not dispatched yet; Retrying are among them and
	// failed at least once (a command that keeps failing is stuck there,
	// with its error in its row); Rejected were refused for good.
	PendingCommands, RetryingCommands, RejectedCommands int64
	// PendingDeadlines have not fired yet; Overdue are among them and due.
	PendingDeadlines, OverdueDeadlines int64
}

// EventRef names an event of the log.
type EventRef struct {
	Position es.Position
	Type     string
}

// Instance is a process instance's row.
type Instance struct {
	Process, ID string
	Status      string // StatusRunning, StatusCompleted or StatusFailed
	State       json.RawMessage
	Step        int64     // decisions applied
	LastEvent   *EventRef // the last event handed to it
	Error       string    // why it failed
	// Stuck says why the instance is stuck (see [StuckRule]), or is empty.
	Stuck                string
	CreatedAt, UpdatedAt time.Time
	// Commands are the commands it decided, in the order of its steps,
	// and Deadlines the deadlines it set, in the order they were set.
	// [ReadInstance] fills them; [ListInstances] does not.
	Commands  []Command
	Deadlines []Deadline
}

// Command is a command an instance decided, in the outbox.
type Command struct {
	ID   string // the ID it is dispatched with: process.CommandIDFor
	Type string // its cqrs.CommandName
	// Step is the decision that sent it, Seq its index there.
	Step int64
	Seq  int
	// Status is CommandPending, CommandDispatched or CommandRejected.
	Status   string
	Attempts int
	// LastError is the error of the last failed attempt of a pending
	// command, or why a rejected one was rejected.
	LastError string
	// NextAttemptAt is when a pending command is tried next.
	NextAttemptAt time.Time
	CreatedAt     time.Time
	DispatchedAt  *time.Time // when it was dispatched; nil until then
	// HandledStep, for a rejected command, is the decision that handled
	// the rejection; 0 when none did.
	HandledStep int64
	Command     json.RawMessage // as stored
}

// Deadline is a deadline an instance set.
type Deadline struct {
	Name string
	Step int64 // the decision that set it
	// Status is DeadlinePending, DeadlineFired, DeadlineCancelled,
	// DeadlineReplaced or DeadlineDropped, and Outcome says what happened
	// to a deadline that is no longer pending ("fired", "cancelled at step
	// 3", "dropped: process completed").
	Status, Outcome string
	DueAt           time.Time
	CreatedAt       time.Time
	ClosedAt        *time.Time // when it stopped being pending
}

// ReadStats returns the counts of process manager name in sink's read
// schema.
func ReadStats(ctx context.Context, sink *pgsink.Sink, name string) (Stats, error) {
	var s Stats
	rule := StuckRule{}.withDefaults()
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		var commit, prepare *int64
		var typ *string
		err := tx.QueryRow(ctx, t.expand(`SELECT
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'running'),
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'completed'),
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'failed'),
			(SELECT count(*) FROM (`+stuckCandidates+`) c JOIN {{instances}} i ON i.process = $1 AND i.id = c.id
				WHERE `+stuckSQL+` IS NOT NULL),
			coalesce((SELECT uncorrelated FROM {{counters}} WHERE process = $1), 0),
			coalesce((SELECT ignored FROM {{counters}} WHERE process = $1), 0),
			(SELECT last_skipped_commit FROM {{counters}} WHERE process = $1),
			(SELECT last_skipped_prepare FROM {{counters}} WHERE process = $1),
			(SELECT last_skipped_type FROM {{counters}} WHERE process = $1),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'pending'),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'pending' AND attempts > 0),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'rejected'),
			(SELECT count(*) FROM {{deadlines}} WHERE process = $1 AND status = 'pending'),
			(SELECT count(*) FROM {{deadlines}} WHERE process = $1 AND status = 'pending' AND due_at <= now())`),
			name, rule.Grace.Microseconds(), rule.Attempts).
			Scan(&s.Running, &s.Completed, &s.Failed, &s.Stuck, &s.Uncorrelated, &s.Ignored, &commit, &prepare, &typ,
				&s.PendingCommands, &s.RetryingCommands, &s.RejectedCommands, &s.PendingDeadlines, &s.OverdueDeadlines)
		if err == nil && commit != nil {
			s.LastSkipped = &EventRef{Position: es.Position{Commit: uint64(*commit), Prepare: uint64(*prepare)}, Type: *typ}
		}
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("pgprocess: read stats of %s: %w", name, err)
	}
	return s, nil
}

// ListProcesses returns the names of the process managers that have rows
// in sink's read schema (instances, or skipped events), sorted.
func ListProcesses(ctx context.Context, sink *pgsink.Sink) ([]string, error) {
	var names []string
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		// A loose index scan of the primary key: one probe per name
		// rather than a read of every instance.
		rows, err := tx.Query(ctx, tablesOf(tx).expand(`WITH RECURSIVE p AS (
				(SELECT process FROM {{instances}} ORDER BY process LIMIT 1)
				UNION ALL
				SELECT (SELECT i.process FROM {{instances}} i WHERE i.process > p.process ORDER BY i.process LIMIT 1)
				FROM p WHERE p.process IS NOT NULL)
			SELECT process FROM p WHERE process IS NOT NULL
			UNION SELECT process FROM {{counters}}
			ORDER BY 1`))
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgprocess: list process managers: %w", err)
	}
	return names, nil
}

// StatusStuck, in a [ListFilter], picks the stuck instances (see
// [StuckRule]). It is not a status an instance has.
const StatusStuck = "stuck"

// ListLimitDefault is the default of ListFilter.Limit.
const ListLimitDefault = 50

// ListFilter picks the instances [ListInstances] returns.
type ListFilter struct {
	// Status is StatusRunning, StatusCompleted, StatusFailed or
	// StatusStuck. Defaults to every instance.
	Status string
	// Limit is the most instances returned. Defaults to 50.
	Limit int
	// Stuck says which instances are stuck. Defaults to the zero
	// StuckRule.
	Stuck StuckRule
}

// Validate reports every problem with f at once.
func (f ListFilter) Validate() error {
	var errs []error
	switch f.Status {
	case "", StatusRunning, StatusCompleted, StatusFailed, StatusStuck:
	default:
		errs = append(errs, fmt.Errorf("pgprocess: ListFilter.Status is %q; want running, completed, failed, stuck or empty (all)", f.Status))
	}
	if f.Limit < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: ListFilter.Limit is %d; want 0 (default) or more", f.Limit))
	}
	if err := f.Stuck.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

const selectListed = `SELECT i.process, i.id, i.status, i.state, i.step, i.last_event_commit, i.last_event_prepare,
	i.last_event_type, i.error, i.created_at, i.updated_at, ` + stuckSQL + ` AS stuck`

func scanListed(row pgx.Row) (Instance, error) {
	var (
		in              Instance
		commit, prepare *int64
		typ, errText    *string
		stuck           *string
	)
	err := row.Scan(&in.Process, &in.ID, &in.Status, &in.State, &in.Step, &commit, &prepare, &typ, &errText,
		&in.CreatedAt, &in.UpdatedAt, &stuck)
	if commit != nil {
		in.LastEvent = &EventRef{Position: es.Position{Commit: uint64(*commit), Prepare: uint64(*prepare)}, Type: *typ}
	}
	if errText != nil {
		in.Error = *errText
	}
	if stuck != nil {
		in.Stuck = *stuck
	}
	return in, err
}

// ListInstances returns the instances of process manager name that f
// picks, newest first (by creation), without their commands and
// deadlines. Each query reads an index: by status and creation, or, for
// the stuck ones, the pending and rejected commands, the overdue
// deadlines and the failed instances.
func ListInstances(ctx context.Context, sink *pgsink.Sink, name string, f ListFilter) ([]Instance, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("pgprocess: list instances of %s: %w", name, err)
	}
	rule := f.Stuck.withDefaults()
	limit := cmp.Or(f.Limit, ListLimitDefault)
	list := []Instance{}
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		var sql string
		args := []any{name, rule.Grace.Microseconds(), rule.Attempts, limit}
		switch f.Status {
		case "":
			sql = selectListed + ` FROM {{instances}} i WHERE i.process = $1 ORDER BY i.created_at DESC, i.id DESC LIMIT $4`
		case StatusStuck:
			sql = `SELECT process, id, status, state, step, last_event_commit, last_event_prepare, last_event_type,
				error, created_at, updated_at, stuck FROM (` + selectListed + ` FROM (` + stuckCandidates + `) c
				JOIN {{instances}} i ON i.process = $1 AND i.id = c.id) s
				WHERE stuck IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT $4`
		default:
			sql = selectListed + ` FROM {{instances}} i WHERE i.process = $1 AND i.status = $5
				ORDER BY i.created_at DESC, i.id DESC LIMIT $4`
			args = append(args, f.Status)
		}
		rows, err := tx.Query(ctx, t.expand(sql), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			in, err := scanListed(rows)
			if err != nil {
				return err
			}
			list = append(list, in)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("pgprocess: list instances of %s: %w", name, err)
	}
	return list, nil
}

// ReadInstance returns instance id of process manager name, with its
// commands and deadlines and why it is stuck under the default
// [StuckRule], or an error that wraps [ErrNotFound].
func ReadInstance(ctx context.Context, sink *pgsink.Sink, name, id string) (Instance, error) {
	var in Instance
	rule := StuckRule{}.withDefaults()
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		// One snapshot for the instance, its stuck reason, its commands
		// and its deadlines: under READ COMMITTED each statement would see
		// the outcomes committed since the one before, and a command could
		// show rejected and unhandled beside an instance that is not stuck.
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return err
		}
		t := tablesOf(tx)
		var err error
		in, err = scanListed(tx.QueryRow(ctx, t.expand(selectListed+` FROM {{instances}} i WHERE i.process = $1 AND i.id = $4`),
			name, rule.Grace.Microseconds(), rule.Attempts, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, t.expand(`SELECT command_id, command_type, step, seq, status, attempts,
				coalesce(last_error, ''), next_attempt_at, created_at, dispatched_at, coalesce(handled_step, 0), command
			FROM {{outbox}} WHERE process = $1 AND id = $2 ORDER BY step, seq`), name, id)
		if err != nil {
			return err
		}
		in.Commands, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Command, error) {
			var c Command
			err := row.Scan(&c.ID, &c.Type, &c.Step, &c.Seq, &c.Status, &c.Attempts, &c.LastError, &c.NextAttemptAt,
				&c.CreatedAt, &c.DispatchedAt, &c.HandledStep, &c.Command)
			return c, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, t.expand(`SELECT name, step, status, coalesce(outcome, ''), due_at, created_at, closed_at
			FROM {{deadlines}} WHERE process = $1 AND id = $2 ORDER BY step, name`), name, id)
		if err != nil {
			return err
		}
		in.Deadlines, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Deadline, error) {
			var d Deadline
			err := row.Scan(&d.Name, &d.Step, &d.Status, &d.Outcome, &d.DueAt, &d.CreatedAt, &d.ClosedAt)
			return d, err
		})
		return err
	})
	if err != nil {
		return Instance{}, fmt.Errorf("pgprocess: read instance %s of %s: %w", id, name, err)
	}
	return in, nil
}
