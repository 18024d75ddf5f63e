package pgprocess

import (
	"context"
	"fmt"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// projection follows the log for one process manager: a pgsink projection
// whose batches decide and store what the events' instances do, in the
// transaction that moves the checkpoint.
type projection struct {
	p    process.Process
	cmds *process.Commands
	wake func(commands, deadlines bool) // set by wakingSink for each batch
}

func (pr *projection) Name() string      { return ProjectionPrefix + pr.p.Name() }
func (pr *projection) Handles() []string { return pr.p.Handles() }

// HandleBatch loads the states of the batch's instances in one query, runs
// decide on each event in log order, and stores the new states, commands,
// deadlines and counters.
func (pr *projection) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	name := pr.p.Name()
	t := tablesOf(tx)
	ids := make([]string, len(events))
	var idList []string
	seen := map[string]bool{}
	for i, ev := range events {
		id, ok := pr.p.Correlate(ev)
		if !ok {
			continue
		}
		ids[i] = id
		if id == "" {
			return fmt.Errorf("pgprocess: %s: correlate %s at %s: empty id with ok=true", name, ev.Record.Type, ev.Record.Position)
		}
		if !seen[id] {
			seen[id] = true
			idList = append(idList, id)
		}
	}
	insts := make(map[string]*instance, len(idList))
	if len(idList) > 0 {
		rows, err := tx.Query(ctx, t.expand(selectInstance+` WHERE process = $1 AND id = ANY($2) ORDER BY id FOR UPDATE`), name, idList)
		if err != nil {
			return fmt.Errorf("pgprocess: %s: load instances: %w", name, err)
		}
		for rows.Next() {
			in, err := scanInstance(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("pgprocess: %s: load instances: %w", name, err)
			}
			insts[in.id] = in
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("pgprocess: %s: load instances: %w", name, err)
		}
	}
	c := &changes{process: name, t: t, cmds: pr.cmds}
	var uncorrelated, ignored int64
	var lastSkipped *projections.Event
	for i, ev := range events {
		id := ids[i]
		if id == "" {
			uncorrelated++
			lastSkipped = &events[i]
			continue
		}
		inst := insts[id]
		if inst == nil {
			inst = &instance{id: id, status: StatusRunning}
			insts[id] = inst
		}
		if inst.status != StatusRunning {
			ignored++
			lastSkipped = &events[i]
			continue
		}
		rec := ev.Record
		commit, prepare := int64(rec.Position.Commit), int64(rec.Position.Prepare)
		inst.lastCommit, inst.lastPrepare, inst.lastType = &commit, &prepare, str(rec.Type)
		o := eventOrigin(rec)
		inst.correlation, inst.traceparent, inst.tracestate = o.correlation, o.traceparent, o.tracestate
		inst.dirty = true
		c.decide(pr.p, inst, process.EventReceived{Event: ev}, o)
	}
	for _, id := range idList {
		c.save(insts[id])
	}
	if lastSkipped != nil {
		rec := lastSkipped.Record
		c.batch.Queue(t.expand(`INSERT INTO {{counters}} AS c (process, uncorrelated, ignored, last_skipped_commit, last_skipped_prepare, last_skipped_type)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (process) DO UPDATE
			SET uncorrelated = c.uncorrelated + excluded.uncorrelated, ignored = c.ignored + excluded.ignored,
				last_skipped_commit = excluded.last_skipped_commit, last_skipped_prepare = excluded.last_skipped_prepare,
				last_skipped_type = excluded.last_skipped_type`),
			name, uncorrelated, ignored, int64(rec.Position.Commit), int64(rec.Position.Prepare), rec.Type)
	}
	if err := c.send(ctx, tx); err != nil {
		return fmt.Errorf("pgprocess: %s: store decisions: %w", name, err)
	}
	if pr.wake != nil {
		pr.wake(c.addedCommands, c.addedDeadlines)
	}
	return nil
}
