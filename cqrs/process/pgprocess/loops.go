package pgprocess

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
// command of the outbox ($2, quoted) while it dispatches it. It is an
// advisory lock of a connection of the dispatcher's own, outside the pool
// (see [claimer]), not a row lock: a row lock would give the dispatching
// transaction an ID for as long as the bus handles the command, and the
// readers of the log wait for every transaction with an ID older than the
// events they read (see es/pgstore), so one slow command would hold back
// every projection of the database; and a transaction of the pool held
// open while the bus handles commands, which take connections of the pool
// too, could leave them none.
func claimKey(commandID string) string {
	return `pg_catalog.hashtextextended('strata process outbox:' || $2::text || ':' || ` + commandID + `, 0)`
}

// nextCommand skips the commands that a dispatcher holds, so that a
// command that takes long to handle does not make every other dispatcher
// look again every minWait until it is done: they wait for a wake-up, a
// notification or PollInterval. (The locks it takes to find out end with
// its transaction.)
func (r *Runner) nextCommand(ctx context.Context) (time.Duration, bool, error) {
	return r.untilNext(ctx, `SELECT (extract(epoch FROM min(o.next_attempt_at) - now()) * 1e6)::bigint
		FROM (SELECT next_attempt_at, command_id FROM {{outbox}} WHERE process = $1 AND status = 'pending'
			ORDER BY next_attempt_at LIMIT `+strconv.Itoa(2*r.cfg.DispatchBatch)+`) o
		WHERE pg_catalog.pg_try_advisory_xact_lock(`+claimKey("o.command_id")+`)`, true)
}

func (r *Runner) nextDeadline(ctx context.Context) (time.Duration, bool, error) {
	return r.untilNext(ctx, `SELECT (extract(epoch FROM min(due_at) - now()) * 1e6)::bigint
		FROM {{deadlines}} WHERE process = $1 AND status = 'pending'`, false)
}

// outboxRow is a claimed command of the outbox, and the outcome of its
// dispatch.
type outboxRow struct {
	id                                       string
	step                                     int64
	seq                                      int
	commandID, commandType                   string
	data                                     []byte
	attempts                                 int
	corr, causation, traceparent, tracestate *string

	cmd any   // nil when it does not decode
	err error // of the dispatch, or of the decoding
}

// claimer is one dispatch loop: it claims commands of the outbox with
// session advisory locks (see claimKey) on a connection of its own, made
// from the pool's configuration but not taken from the pool, so that the
// commands it dispatches, and the transactions that record their
// outcomes, always find the pool's connections free of it. The connection
// runs no transaction: it gets no transaction ID. When it breaks, or the
// process dies, the server releases its locks and the commands are
// claimed again (the bus answers a repeat with the first dispatch's
// result); outcomes are recorded only for commands still pending, so a
// rejection is handed to decide once.
type claimer struct {
	r    *Runner
	t    tables
	conn *pgx.Conn // nil until the first batch, and after an error
}

func (c *claimer) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	cfg := c.r.sink.Pool().Config().ConnConfig.Copy()
	app := cmp.Or(cfg.RuntimeParams["application_name"], "strata")
	cfg.RuntimeParams["application_name"] = app + " dispatcher"
	// The claims of a machine that died, rather than a process, last until
	// the server finds the connection dead: with these settings about a
	// minute, rather than the two hours of the usual TCP defaults.
	for k, v := range map[string]string{"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"} {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	cctx, cancel := context.WithTimeout(ctx, claimConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("connect the dispatcher's claim connection: %w", err)
	}
	c.conn = conn
	return nil
}

// close closes the claim connection, which releases its locks.
func (c *claimer) close() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), claimConnectTimeout)
		defer cancel()
		_ = c.conn.Close(ctx)
		c.conn = nil
	}
}

// claimConnectTimeout bounds connecting and closing the claim connection.
const claimConnectTimeout = 10 * time.Second

// dispatchBatch dispatches up to Config.DispatchBatch pending commands
// that are due and that no other dispatcher holds, at once, records their
// outcomes and releases them. A crash after the dispatch and before the
// outcome's commit leaves the rows pending: they are dispatched again,
// with the same IDs, and the bus answers with the first dispatch's
// results.
//
// The outcomes are recorded in one transaction when the batch is done;
// when the slowest commands of the batch are not done after
// Config.OutcomeFlush, the outcomes of the others are recorded in a
// transaction of their own, and again after each further OutcomeFlush: a
// slow command delays the outcomes of the others (a rejection's
// compensation, a retry) by OutcomeFlush at most.
func (c *claimer) dispatchBatch(ctx context.Context) (bool, error) {
	if err := c.connect(ctx); err != nil {
		return false, err
	}
	batch, err := c.claim(ctx)
	if err == nil && len(batch) > 0 {
		err = c.r.dispatchAll(ctx, batch)
	}
	// The locks go, and with them the claim: with the connection when
	// anything failed, as its state is then unknown.
	if err == nil {
		_, err = c.conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_unlock_all()`)
	}
	if err != nil {
		c.close()
	}
	return len(batch) > 0, err
}

// claim locks up to Config.DispatchBatch pending commands that are due on
// the claim connection, and reads them.
func (c *claimer) claim(ctx context.Context) ([]*outboxRow, error) {
	name, t, n := c.r.p.Name(), c.t, c.r.cfg.DispatchBatch
	// The subquery keeps its order, and the outer limit stops taking
	// locks once it holds n of them.
	rows, err := c.conn.Query(ctx, t.expand(`SELECT o.id, o.step, o.seq FROM (SELECT id, step, seq, command_id FROM {{outbox}}
		WHERE process = $1 AND status = 'pending' AND next_attempt_at <= now()
		ORDER BY next_attempt_at, id, step, seq LIMIT `+strconv.Itoa(2*n)+`) o
		WHERE pg_catalog.pg_try_advisory_lock(`+claimKey("o.command_id")+`)
		LIMIT `+strconv.Itoa(n)), name, t.outbox)
	if err != nil {
		return nil, err
	}
	var (
		ids   []string
		steps []int64
		seqs  []int32
		id    string
		step  int64
		seq   int32
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &step, &seq}, func() error {
		ids, steps, seqs = append(ids, id), append(steps, step), append(seqs, seq)
		return nil
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	// The rows are read again after the locks are taken, in a statement
	// of its own: one that started before another dispatcher committed
	// its outcome would see them pending. The id = ANY condition lets
	// the primary key find them: without it, PostgreSQL joined the
	// unnest with a scan of the whole outbox (8.8 ms a batch with 4,000
	// rows).
	rows, err = c.conn.Query(ctx, t.expand(`SELECT o.id, o.step, o.seq, o.command_id, o.command_type, o.command, o.attempts,
			o.correlation_id, o.causation_id, o.traceparent, o.tracestate
		FROM {{outbox}} o JOIN unnest($2::text[], $3::bigint[], $4::int[]) AS k(id, step, seq)
			ON o.id = k.id AND o.step = k.step AND o.seq = k.seq
		WHERE o.process = $1 AND o.id = ANY($2) AND o.status = 'pending' AND o.next_attempt_at <= now()
		ORDER BY o.next_attempt_at, o.id, o.step, o.seq`), name, ids, steps, seqs)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*outboxRow, error) {
		o := &outboxRow{}
		err := row.Scan(&o.id, &o.step, &o.seq, &o.commandID, &o.commandType, &o.data, &o.attempts,
			&o.corr, &o.causation, &o.traceparent, &o.tracestate)
		return o, err
	})
}

// dispatchAll dispatches batch on the bus at once, and records the
// outcomes: those done after OutcomeFlush in a transaction of their own,
// the rest in a last one.
func (r *Runner) dispatchAll(ctx context.Context, batch []*outboxRow) error {
	done := make(chan *outboxRow, len(batch))
	for _, o := range batch {
		go func() {
			start := time.Now()
			o.err = r.dispatch(ctx, o)
			outcome := OutcomeDispatched
			switch {
			case o.err == nil:
			case o.cmd != nil && r.cfg.Permanent(o.err):
				outcome = OutcomeRejected
			default:
				outcome = OutcomeRetry
			}
			r.metrics.dispatched(ctx, outcome, time.Since(start))
			done <- o
		}()
	}
	var (
		ready    []*outboxRow
		flushErr error
	)
	recordReady := func() {
		if len(ready) > 0 && flushErr == nil {
			flushErr = r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
				return r.record(ctx, tx, ready)
			})
		}
		ready = nil
	}
	flush := time.NewTimer(r.cfg.OutcomeFlush)
	defer flush.Stop()
	for left := len(batch); left > 0; {
		select {
		case o := <-done:
			ready = append(ready, o)
			left--
		case <-flush.C:
			recordReady()
			flush.Reset(r.cfg.OutcomeFlush)
		}
	}
	// What was not recorded stays pending, and is dispatched again.
	recordReady()
	return flushErr
}

// dispatch rebuilds o's command with its derived ID and dispatches it on
// the bus, with the context of the decision that sent it.
func (r *Runner) dispatch(ctx context.Context, o *outboxRow) error {
	cmd, err := r.cmds.Decode(o.commandType, o.data, o.commandID)
	if err != nil {
		return err
	}
	o.cmd = cmd
	md := es.Metadata{}
	for k, v := range map[string]*string{es.MetaCorrelationID: o.corr, es.MetaTraceParent: o.traceparent, es.MetaTraceState: o.tracestate} {
		if v != nil {
			md[k] = *v
		}
	}
	_, err = r.bus.Dispatch(cqrs.ContextFromMetadata(ctx, md), cmd)
	return err
}

// record records in tx the outcomes of those commands of batch that are
// still pending (another dispatcher may have recorded them after this
// one's claim was lost): dispatched; rejected, with the rejection handed
// to decide; or, for a transient error, the attempt, the error and the
// time of the next attempt. Rejections lock their outbox rows, then their
// instances, in the order of their IDs, as the follower locks instances,
// so that no two transactions wait for each other in a circle.
func (r *Runner) record(ctx context.Context, tx *pgsink.Tx, batch []*outboxRow) error {
	name := r.p.Name()
	t := tablesOf(tx)
	slices.SortFunc(batch, func(a, b *outboxRow) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.step, b.step), cmp.Compare(a.seq, b.seq))
	})
	var (
		b     pgx.Batch
		ids   []string
		steps []int64
		seqs  []int
	)
	for _, o := range batch {
		key := []any{name, o.id, o.step, o.seq}
		switch {
		case o.err == nil:
			ids, steps, seqs = append(ids, o.id), append(steps, o.step), append(seqs, o.seq)
		case o.cmd != nil && r.cfg.Permanent(o.err):
			tag, err := tx.Exec(ctx, t.expand(`UPDATE {{outbox}} SET status = 'rejected', attempts = attempts + 1, last_error = $5
				WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4 AND status = 'pending'`), append(key, o.err.Error())...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			r.cfg.Logger.InfoContext(ctx, "pgprocess: command rejected", "process", name, "id", o.id,
				"command", o.commandType, "command_id", o.commandID, "err", o.err)
			handled, err := r.decideLocked(ctx, tx, o.id, process.CommandRejected{Command: o.cmd, Err: o.err}, o.commandID)
			if err != nil {
				return err
			}
			if handled != nil {
				b.Queue(t.expand(`UPDATE {{outbox}} SET handled_step = $5 WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4`),
					append(key, *handled)...)
			}
		default:
			delay := backoff.Backoff{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax}.Delay(o.attempts)
			r.cfg.Logger.WarnContext(ctx, "pgprocess: command failed; will retry", "process", name, "id", o.id,
				"command", o.commandType, "command_id", o.commandID, "attempts", o.attempts+1, "retry_in", delay, "err", o.err)
			b.Queue(t.expand(`UPDATE {{outbox}} SET attempts = attempts + 1, last_error = $5,
				next_attempt_at = now() + $6::bigint * interval '1 microsecond'
				WHERE process = $1 AND id = $2 AND step = $3 AND seq = $4 AND status = 'pending'`), append(key, o.err.Error(), delay.Microseconds())...)
		}
	}
	if len(ids) > 0 {
		b.Queue(t.expand(`UPDATE {{outbox}} o SET status = 'dispatched', attempts = attempts + 1,
				last_error = NULL, dispatched_at = now()
			FROM unnest($2::text[], $3::bigint[], $4::int[]) AS k(id, step, seq)
			WHERE o.process = $1 AND o.id = ANY($2) AND o.id = k.id AND o.step = k.step AND o.seq = k.seq
				AND o.status = 'pending'`), name, ids, steps, seqs)
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, &b).Close()
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

// dueDeadline is a due deadline and its instance, locked.
type dueDeadline struct {
	name string
	step int64
	due  time.Time
	inst *instance
}

// fireBatch fires up to Config.DeadlineBatch due deadlines whose instances
// no other transaction holds, one per instance, in one transaction: it
// marks them fired and applies what their instances decided, so each
// fires once in effect. The deadline of an instance that is no longer
// running is marked dropped instead.
func (r *Runner) fireBatch(ctx context.Context) (bool, error) {
	name := r.p.Name()
	did := false
	var (
		delays  []float64 // of the deadlines fired, in seconds
		dropped int
	)
	err := r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		delays, dropped = delays[:0], 0
		t := tablesOf(tx)
		// Lock the instances, not the deadlines: every writer locks an
		// instance before its deadlines, and this transaction waits for
		// no lock (SKIP LOCKED; it writes only the deadlines of the
		// instances it holds), so that none waits for another in a
		// circle, whatever the order. The order is the pending index's
		// alone: a tiebreaker would sort every due deadline (142 ms for
		// 10,000 in EXPLAIN ANALYZE) on each batch. The instances' columns
		// are those of the rows locked, the deadlines' may be older: they
		// are checked when marked.
		rows, err := tx.Query(ctx, t.expand(`SELECT d.name, d.step, d.due_at, `+instanceColumns("i")+`
			FROM {{deadlines}} d JOIN {{instances}} i ON i.process = d.process AND i.id = d.id
			WHERE d.process = $1 AND d.status = 'pending' AND d.due_at <= now()
			ORDER BY d.due_at LIMIT `+strconv.Itoa(r.cfg.DeadlineBatch)+` FOR UPDATE OF i SKIP LOCKED`), name)
		if err != nil {
			return err
		}
		var due []dueDeadline
		seen := map[string]bool{}
		for rows.Next() {
			d := dueDeadline{inst: &instance{}}
			if err := rows.Scan(append([]any{&d.name, &d.step, &d.due}, d.inst.fields()...)...); err != nil {
				rows.Close()
				return err
			}
			// One deadline per instance: what the first decides may
			// cancel or replace the next, which fires in a later batch
			// if it is still pending then.
			if !seen[d.inst.id] {
				seen[d.inst.id] = true
				due = append(due, d)
			}
		}
		err = rows.Err()
		if err != nil || len(due) == 0 {
			return err
		}
		did = true
		var ids, names, statuses, outcomes []string
		var steps []int64
		for _, d := range due {
			status, outcome := DeadlineFired, "fired"
			if d.inst.status != StatusRunning {
				status, outcome = DeadlineDropped, "dropped: process "+d.inst.status
			}
			ids, names, steps = append(ids, d.inst.id), append(names, d.name), append(steps, d.step)
			statuses, outcomes = append(statuses, status), append(outcomes, outcome)
		}
		// A deadline cancelled or replaced meanwhile is not marked.
		rows, err = tx.Query(ctx, t.expand(`UPDATE {{deadlines}} d SET status = k.status, outcome = k.outcome, closed_at = now()
			FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[]) AS k(id, name, step, status, outcome)
			WHERE d.process = $1 AND d.id = k.id AND d.name = k.name AND d.step = k.step AND d.status = 'pending'
			RETURNING d.id, d.status, extract(epoch FROM now() - d.due_at)::float8`), name, ids, names, steps, statuses, outcomes)
		if err != nil {
			return err
		}
		fired := map[string]bool{}
		var (
			id, status string
			late       float64
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &status, &late}, func() error {
			fired[id] = status == DeadlineFired
			if fired[id] {
				delays = append(delays, late)
			} else {
				dropped++
			}
			return nil
		}); err != nil {
			return err
		}
		c := &changes{process: name, t: t, cmds: r.cmds}
		for _, d := range due {
			if !fired[d.inst.id] {
				continue
			}
			c.decide(r.p, d.inst, process.DeadlineFired{Name: d.name, Due: d.due}, d.inst.origin("deadline:"+d.name))
			c.save(d.inst)
		}
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
	if err == nil {
		r.metrics.closed(ctx, delays, dropped)
	}
	return did, err
}
