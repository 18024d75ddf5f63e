package pgprocess

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
	"github.com/stratadev/strata/projections/pgsink"
)

// minWait keeps a loop whose next row is due but locked by another runner
// from spinning.
const minWait = 20 * time.Millisecond

// loop calls one until it finds nothing to do, then waits for a wake-up on
// woken, for the time next returns (the wait until the next row is due) or
// for PollInterval, whichever comes first. Errors are logged and retried
// with backoff. It returns when ctx ends.
func (r *Runner) loop(ctx context.Context, what string, woken <-chan struct{},
	one func(context.Context) (bool, error), next func(context.Context) (time.Duration, bool, error)) {
	retry := backoff.Backoff{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax}
	failures := 0
	for ctx.Err() == nil {
		did, err := one(ctx)
		if err == nil && !did {
			wait := r.cfg.PollInterval
			var d time.Duration
			var ok bool
			if d, ok, err = next(ctx); err == nil && ok {
				wait = min(wait, max(d, minWait))
			}
			if err == nil {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
				case <-woken:
				case <-t.C:
				}
				t.Stop()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.cfg.Logger.ErrorContext(ctx, "pgprocess: "+what+" failed", "process", r.p.Name(), "err", err)
			retry.Wait(ctx, failures)
			failures++
			continue
		}
		failures = 0
	}
}

// untilNext returns how long until the earliest of the times sql selects
// is due, on the database's clock. sql gets the process manager's name as
// $1 and, with outbox set, the outbox's quoted name as $2.
func (r *Runner) untilNext(ctx context.Context, sql string, outbox bool) (time.Duration, bool, error) {
	var us *int64
	err := r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		args := []any{r.p.Name()}
		if outbox {
			args = append(args, t.outbox)
		}
		return tx.QueryRow(ctx, t.expand(sql), args...).Scan(&us)
	})
	if err != nil || us == nil {
		return 0, false, err
	}
	return time.Duration(*us) * time.Microsecond, true, nil
}

// claimKey is the key of the advisory lock that a dispatcher holds on a
// command of the outbox ($2, quoted) while it dispatches it: a
// transaction-level advisory lock, not a row lock. A row lock would give
// the dispatching transaction an ID for as long as the bus handles the
// command, and the readers of the log wait for every transaction with an
// ID older than the events they read (see es/pgstore): one slow command
// would hold back every projection of the database. The transaction gets
// an ID only when it records the outcome.
func claimKey(commandID string) string {
	return `pg_catalog.hashtextextended('strata process outbox:' || $2::text || ':' || ` + commandID + `, 0)`
}

// candidates bounds how many due commands a dispatcher tries to claim, or
// nextCommand looks at, in one query.
const candidates = 64

// nextCommand skips the commands that a dispatcher holds, so that a
// command that takes long to handle does not make every other dispatcher
// look again every minWait until it is done: they wait for a wake-up, a
// notification or PollInterval. (The locks it takes to find out end with
// its transaction.)
func (r *Runner) nextCommand(ctx context.Context) (time.Duration, bool, error) {
	return r.untilNext(ctx, `SELECT (extract(epoch FROM min(o.next_attempt_at) - now()) * 1e6)::bigint
		FROM (SELECT next_attempt_at, command_id FROM {{outbox}} WHERE process = $1 AND status = 'pending'
			ORDER BY next_attempt_at LIMIT `+strconv.Itoa(candidates)+`) o
		WHERE pg_catalog.pg_try_advisory_xact_lock(`+claimKey("o.command_id")+`)`, true)
}

func (r *Runner) nextDeadline(ctx context.Context) (time.Duration, bool, error) {
	return r.untilNext(ctx, `SELECT (extract(epoch FROM min(due_at) - now()) * 1e6)::bigint
		FROM {{deadlines}} WHERE process = $1 AND status = 'pending'`, false)
}

// dispatchOne dispatches one pending command that is due, if there is one
// no other runner is dispatching, and records the outcome in the same
// transaction that claimed it (see claimKey). A crash after the dispatch
// and before the commit leaves the row pending: it is dispatched again,
// with the same ID, and the bus answers with the first dispatch's result.
func (r *Runner) dispatchOne(ctx context.Context) (bool, error) {
	name := r.p.Name()
	did := false
	err := r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		var (
			id, cmdID, cmdType                       string
			step                                     int64
			seq, attempts                            int
			data                                     []byte
			corr, causation, traceparent, tracestate *string
		)
		rows, err := tx.Query(ctx, t.expand(`SELECT id, step, seq, command_id FROM {{outbox}}
			WHERE process = $1 AND status = 'pending' AND next_attempt_at <= now()
			ORDER BY next_attempt_at, id, step, seq LIMIT `+strconv.Itoa(candidates)), name)
		if err != nil {
			return err
		}
		type candidate struct {
			id        string
			step      int64
			seq       int
			commandID string
		}
		due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (candidate, error) {
			var c candidate
			err := row.Scan(&c.id, &c.step, &c.seq, &c.commandID)
			return c, err
		})
		if err != nil {
			return err
		}
		for _, c := range due {
			// The row is read again after the lock is taken, in a
			// statement of its own: one that started before another
			// dispatcher committed its outcome would see it pending.
			var b pgx.Batch
			var claimed bool
			b.Queue(`SELECT pg_catalog.pg_try_advisory_xact_lock(`+claimKey("$1")+`)`, c.commandID, t.outbox).
				QueryRow(func(row pgx.Row) error { return row.Scan(&claimed) })
			b.Queue(t.expand(`SELECT command_type, command, attempts, correlation_id, causation_id, traceparent, tracestate
				FROM {{outbox}} WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4
					AND status = 'pending' AND next_attempt_at <= now()`), name, c.id, c.step, c.seq).
				QueryRow(func(row pgx.Row) error {
					err := row.Scan(&cmdType, &data, &attempts, &corr, &causation, &traceparent, &tracestate)
					if errors.Is(err, pgx.ErrNoRows) {
						claimed = false
						return nil
					}
					return err
				})
			if err := tx.SendBatch(ctx, &b).Close(); err != nil {
				return err
			}
			if claimed {
				id, step, seq, cmdID, did = c.id, c.step, c.seq, c.commandID, true
				break
			}
		}
		if !did {
			return nil
		}
		key := []any{name, id, step, seq}
		cmd, err := r.cmds.Decode(cmdType, data, cmdID)
		if err == nil {
			md := es.Metadata{}
			for k, v := range map[string]*string{es.MetaCorrelationID: corr, es.MetaTraceParent: traceparent, es.MetaTraceState: tracestate} {
				if v != nil {
					md[k] = *v
				}
			}
			_, err = r.bus.Dispatch(cqrs.ContextFromMetadata(ctx, md), cmd)
		}
		switch {
		case err == nil:
			_, err = tx.Exec(ctx, t.expand(`UPDATE {{outbox}} SET status = 'dispatched', attempts = attempts + 1,
				last_error = NULL, dispatched_at = now() WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4`), key...)
			return err
		case cmd != nil && r.cfg.Permanent(err):
			r.cfg.Logger.InfoContext(ctx, "pgprocess: command rejected", "process", name, "id", id, "command", cmdType, "command_id", cmdID, "err", err)
			handled, derr := r.decideLocked(ctx, tx, id, process.CommandRejected{Command: cmd, Err: err}, cmdID)
			if derr != nil {
				return derr
			}
			_, err = tx.Exec(ctx, t.expand(`UPDATE {{outbox}} SET status = 'rejected', attempts = attempts + 1,
				last_error = $5, handled_step = $6 WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4`),
				append(key, err.Error(), handled)...)
			return err
		default:
			delay := backoff.Backoff{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax}.Delay(attempts)
			r.cfg.Logger.WarnContext(ctx, "pgprocess: command failed; will retry", "process", name, "id", id,
				"command", cmdType, "command_id", cmdID, "attempts", attempts+1, "retry_in", delay, "err", err)
			_, err = tx.Exec(ctx, t.expand(`UPDATE {{outbox}} SET attempts = attempts + 1, last_error = $5,
				next_attempt_at = now() + $6::bigint * interval '1 microsecond'
				WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4`), append(key, err.Error(), delay.Microseconds())...)
			return err
		}
	})
	return did, err
}

// decideLocked locks instance id, hands it input if it is running, and
// queues and sends what it decided, in tx. It returns the step of the
// decision, or nil when the instance did not decide: it is not running, or
// it failed on input.
func (r *Runner) decideLocked(ctx context.Context, tx *pgsink.Tx, id string, input process.Input, causation string) (*int64, error) {
	t := tablesOf(tx)
	inst, err := scanInstance(tx.QueryRow(ctx, t.expand(selectInstance+` WHERE process = $1 AND id = $2 FOR UPDATE`), r.p.Name(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if inst.status != StatusRunning {
		return nil, nil
	}
	c := &changes{process: r.p.Name(), t: t, cmds: r.cmds}
	c.decide(r.p, inst, input, inst.origin(causation))
	c.save(inst)
	if err := c.send(ctx, tx); err != nil {
		return nil, err
	}
	if c.addedCommands {
		wake(r.commands)
	}
	if c.addedDeadlines {
		wake(r.deadlines)
	}
	if inst.status == StatusFailed {
		return nil, nil
	}
	return &inst.step, nil
}

// fireOne fires one due deadline, if there is one whose instance no other
// transaction holds: it marks it fired and applies what the instance
// decided in one transaction, so it fires once in effect. The deadline of
// an instance that is no longer running is marked dropped instead.
func (r *Runner) fireOne(ctx context.Context) (bool, error) {
	name := r.p.Name()
	did := false
	err := r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		var (
			id, dname string
			step      int64
			due       time.Time
		)
		// Lock the instance, not the deadline: every writer locks an
		// instance before its deadlines, so that none waits for another in
		// a circle.
		err := tx.QueryRow(ctx, t.expand(`SELECT d.id, d.name, d.step, d.due_at
			FROM {{deadlines}} d JOIN {{instances}} i ON i.process = d.process AND i.id = d.id
			WHERE d.process = $1 AND d.status = 'pending' AND d.due_at <= now()
			ORDER BY d.due_at LIMIT 1 FOR UPDATE OF i SKIP LOCKED`), name).Scan(&id, &dname, &step, &due)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		did = true
		inst, err := scanInstance(tx.QueryRow(ctx, t.expand(selectInstance+` WHERE process = $1 AND id = $2`), name, id))
		if err != nil {
			return err
		}
		status, outcome := DeadlineFired, "fired"
		if inst.status != StatusRunning {
			status, outcome = DeadlineDropped, "dropped: process "+inst.status
		}
		tag, err := tx.Exec(ctx, t.expand(`UPDATE {{deadlines}} SET status = $5, outcome = $6, closed_at = now()
			WHERE process = $1 AND id = $2 AND name = $3 AND step = $4 AND status = 'pending'`),
			name, id, dname, step, status, outcome)
		if err != nil || tag.RowsAffected() == 0 || status != DeadlineFired {
			return err // cancelled meanwhile, or dropped
		}
		c := &changes{process: name, t: t, cmds: r.cmds}
		c.decide(r.p, inst, process.DeadlineFired{Name: dname, Due: due}, inst.origin("deadline:"+dname))
		c.save(inst)
		if err := c.send(ctx, tx); err != nil {
			return err
		}
		if c.addedCommands {
			wake(r.commands)
		}
		if c.addedDeadlines {
			wake(r.deadlines)
		}
		return nil
	})
	return did, err
}
