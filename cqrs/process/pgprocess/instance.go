package pgprocess

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/es"
)

// instance is a process instance's row, as a transaction changes it.
type instance struct {
	id     string
	state  []byte
	status string
	step   int64
	err    *string
	// The last event handed to the instance.
	lastCommit, lastPrepare *int64
	lastType                *string
	// Where commands sent on deadlines and rejections come from: the
	// last event's.
	correlation, traceparent, tracestate *string
	dirty                                bool
}

// origin is what the commands of one decision carry.
type origin struct {
	correlation, causation, traceparent, tracestate *string
}

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// eventOrigin is the origin of commands decided on rec: its correlation
// ID (its own ID when it has none), its ID as causation, its trace context.
func eventOrigin(rec es.Record) origin {
	md := rec.Metadata
	corr := md[es.MetaCorrelationID]
	if corr == "" {
		corr = rec.ID.String()
	}
	return origin{correlation: str(corr), causation: str(rec.ID.String()),
		traceparent: str(md[es.MetaTraceParent]), tracestate: str(md[es.MetaTraceState])}
}

func (in *instance) origin(causation string) origin {
	return origin{correlation: in.correlation, causation: str(causation), traceparent: in.traceparent, tracestate: in.tracestate}
}

// instanceColumns lists the columns of an instance that [instance.fields]
// scans, of the table aliased as alias, or unqualified when it is "".
func instanceColumns(alias string) string {
	cols := []string{"id", "state", "status", "step", "error", "last_event_commit", "last_event_prepare", "last_event_type",
		"correlation_id", "traceparent", "tracestate"}
	if alias != "" {
		for i, c := range cols {
			cols[i] = alias + "." + c
		}
	}
	return strings.Join(cols, ", ")
}

var selectInstance = `SELECT ` + instanceColumns("") + ` FROM {{instances}}`

// fields returns where to scan the columns of instanceColumns.
func (in *instance) fields() []any {
	return []any{&in.id, &in.state, &in.status, &in.step, &in.err, &in.lastCommit, &in.lastPrepare, &in.lastType,
		&in.correlation, &in.traceparent, &in.tracestate}
}

func scanInstance(row pgx.Row) (*instance, error) {
	in := &instance{}
	err := row.Scan(in.fields()...)
	return in, err
}

// changes collects the writes of one transaction.
type changes struct {
	process string
	t       tables
	cmds    *process.Commands
	batch   pgx.Batch
	// Whether commands or deadlines were added, to wake the loops.
	addedCommands, addedDeadlines bool
}

// decide runs p on in for inst and queues what it decided. An error that
// belongs to the instance (its state does not decode, Decide failed, a
// command is not registered) fails the instance and is not returned.
func (c *changes) decide(p process.Process, inst *instance, input process.Input, o origin) {
	out, err := p.Step(inst.state, input)
	if err == nil {
		err = c.queue(inst, out, o)
	}
	if err != nil {
		inst.status, inst.err, inst.dirty = StatusFailed, str(err.Error()), true
	}
}

// queue queues the decision out of inst, one step after its last.
func (c *changes) queue(inst *instance, out process.Outcome, o origin) error {
	step := inst.step + 1
	type cmd struct {
		name string
		data []byte
	}
	cmds := make([]cmd, len(out.Commands))
	for i, command := range out.Commands {
		name, err := c.cmds.Name(command)
		if err != nil {
			return err
		}
		data, err := json.Marshal(command)
		if err != nil {
			return fmt.Errorf("pgprocess: encode command %s: %w", name, err)
		}
		cmds[i] = cmd{name, data}
	}
	for i, cm := range cmds {
		c.batch.Queue(c.t.expand(`INSERT INTO {{outbox}} (process, id, step, seq, command_id, command_type, command,
			correlation_id, causation_id, traceparent, tracestate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`),
			c.process, inst.id, step, i, process.CommandIDFor(c.process, inst.id, step, i), cm.name, cm.data,
			o.correlation, o.causation, o.traceparent, o.tracestate)
		c.addedCommands = true
	}
	for _, name := range out.Cancel {
		c.batch.Queue(c.t.expand(`UPDATE {{deadlines}} SET status = 'cancelled', closed_at = now(), outcome = $4
			WHERE process = $1 AND id = $2 AND name = $3 AND status = 'pending'`),
			c.process, inst.id, name, fmt.Sprintf("cancelled at step %d", step))
	}
	for _, d := range out.Deadlines {
		c.batch.Queue(c.t.expand(`UPDATE {{deadlines}} SET status = 'replaced', closed_at = now(), outcome = $4
			WHERE process = $1 AND id = $2 AND name = $3 AND status = 'pending'`),
			c.process, inst.id, d.Name, fmt.Sprintf("replaced at step %d", step))
		var at *time.Time
		if !d.At.IsZero() {
			at = &d.At
		}
		// The database's clock decides when After is up.
		c.batch.Queue(c.t.expand(`INSERT INTO {{deadlines}} (process, id, name, step, due_at)
			VALUES ($1, $2, $3, $4, coalesce($5::timestamptz, now() + $6::bigint * interval '1 microsecond'))`),
			c.process, inst.id, d.Name, step, at, d.After.Microseconds())
		c.addedDeadlines = true
	}
	inst.state, inst.step, inst.dirty = out.State, step, true
	if out.Done {
		inst.status = StatusCompleted
	}
	return nil
}

// save queues the upsert of inst, when it changed.
func (c *changes) save(inst *instance) {
	if !inst.dirty {
		return
	}
	var state any
	if inst.state != nil {
		state = json.RawMessage(inst.state)
	}
	c.batch.Queue(c.t.expand(`INSERT INTO {{instances}} AS i (process, id, state, status, step, error,
			last_event_commit, last_event_prepare, last_event_type, correlation_id, traceparent, tracestate)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (process, id) DO UPDATE SET state = excluded.state, status = excluded.status, step = excluded.step,
			error = excluded.error, last_event_commit = excluded.last_event_commit,
			last_event_prepare = excluded.last_event_prepare, last_event_type = excluded.last_event_type,
			correlation_id = excluded.correlation_id, traceparent = excluded.traceparent,
			tracestate = excluded.tracestate, updated_at = now()`),
		c.process, inst.id, state, inst.status, inst.step, inst.err, inst.lastCommit, inst.lastPrepare, inst.lastType,
		inst.correlation, inst.traceparent, inst.tracestate)
	inst.dirty = false
}

// send runs the queued writes in tx. When they add commands or deadlines,
// they notify the runners of the process manager in every process, once
// per transaction: the notification goes out when tx commits.
func (c *changes) send(ctx context.Context, tx pgx.Tx) error {
	if c.addedCommands || c.addedDeadlines {
		c.batch.Queue(`SELECT pg_catalog.pg_notify($1, $2)`, c.t.channel, c.process)
	}
	if c.batch.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, &c.batch).Close()
}
