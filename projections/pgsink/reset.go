package pgsink

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
)

// ResetConfig tunes [Sink.ResetProjection]. The zero value works: it
// allows only resets that apply no event a second time.
type ResetConfig struct {
	// Tables are the projection's read-model tables, as
	// [Rebuildable.Tables] names them. A reset to [es.Start] empties them,
	// and drops the projection's dead letters, in the transaction that
	// moves the checkpoint, so that the replay builds them from nothing.
	// Defaults to none: the sink does not know the tables.
	Tables []string
	// Idempotent asserts that the projection's handlers can apply an event
	// again without changing the result (upserts of whole rows, say, but
	// not counters). It allows the resets that replay events into rows
	// that already reflect them: back to a position other than the start,
	// or to the start when Tables is empty. Defaults to false.
	Idempotent bool
}

// ResetResult says what [Sink.ResetProjection] did.
type ResetResult struct {
	From, To es.Position
	// Cleared lists the tables that were emptied, with the rows each had,
	// in the order of [ResetConfig.Tables].
	Cleared []ClearedTable
	// DeadLetters counts the dead letters dropped with the tables.
	DeadLetters int64
}

// ClearedTable is a table a reset emptied.
type ClearedTable struct {
	Table string
	Rows  int64
}

// ErrUnsafeReset means a reset would apply events a second time to rows
// that already reflect them.
var ErrUnsafeReset = errors.New("pgsink: reset would apply events again to rows that reflect them")

// UnsafeResetError is returned by [Sink.ResetProjection] for a reset it
// refuses; nothing was changed.
type UnsafeResetError struct {
	Projection string
	From, To   es.Position
	// TablesKnown says that the sink was given the projection's tables
	// (a reset to the start would have emptied them).
	TablesKnown bool
}

func (e *UnsafeResetError) Error() string {
	if e.To.IsZero() {
		return fmt.Sprintf("pgsink: reset %s from %s to the start: its tables are not known, and replaying into them would apply every event a second time",
			e.Projection, e.From)
	}
	return fmt.Sprintf("pgsink: reset %s from %s back to %s: its tables already reflect the events after %s, which would be applied a second time",
		e.Projection, e.From, e.To, e.To)
}

func (e *UnsafeResetError) Unwrap() error { return ErrUnsafeReset }

// ResetProjection moves the checkpoint of a projection to pos so that its
// worker applies the events after pos again, without applying an event
// twice to the same rows:
//
//   - to [es.Start] with cfg.Tables: the tables are emptied and the
//     projection's dead letters dropped, in the transaction that moves the
//     checkpoint (a batch in flight finishes first), so the replay builds
//     the read model from nothing. Readers see the old rows until that
//     transaction commits and an empty model then, filling up as the
//     worker replays; [Sink.Rebuild] keeps the old rows serving instead.
//   - forwards, or to where it is: nothing is applied again (the events
//     skipped are not applied at all).
//   - back, to the start without cfg.Tables or to any other position: the
//     rows already reflect those events, so the reset is refused with an
//     [*UnsafeResetError] unless cfg.Idempotent says that applying them
//     again is harmless.
//
// The projection's state (running, paused, stalled) is kept; a running
// worker goes on from the new checkpoint. For a checkpoint move
// without these checks, see [Sink.Reset].
func (s *Sink) ResetProjection(ctx context.Context, name string, pos es.Position, cfg ResetConfig) (ResetResult, error) {
	res := ResetResult{To: pos}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Holds the checkpoint: a batch in flight commits first, the next
		// one starts after this transaction and sees the new checkpoint.
		if err := s.lockCheckpoint(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.ensure, name); err != nil {
			return err
		}
		cp, err := s.checkpoint(ctx, tx, name)
		if err != nil {
			return err
		}
		res.From = cp.Position
		empty := pos.IsZero() && len(cfg.Tables) > 0
		if !empty && !cfg.Idempotent && pos.Before(res.From) {
			return &UnsafeResetError{Projection: name, From: res.From, To: pos, TablesKnown: len(cfg.Tables) > 0}
		}
		if empty {
			for _, t := range cfg.Tables {
				tag, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{s.cfg.ReadSchema, t}.Sanitize())
				if err != nil {
					return fmt.Errorf("empty %s: %w", t, err)
				}
				res.Cleared = append(res.Cleared, ClearedTable{Table: t, Rows: tag.RowsAffected()})
			}
			tag, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_dead_letters WHERE projection = $1`), name)
			if err != nil {
				return fmt.Errorf("drop dead letters: %w", err)
			}
			res.DeadLetters = tag.RowsAffected()
		}
		_, err = tx.Exec(ctx, s.expand(`WITH c AS (UPDATE {{schema}}.projection_checkpoints
			SET commit_pos = $2, prepare_pos = $3, updated_at = now() WHERE name = $1
			RETURNING name) SELECT pg_catalog.pg_notify(`+quoteLiteral(s.channel)+`, name) FROM c`),
			name, int64(pos.Commit), int64(pos.Prepare))
		return err
	})
	var unsafe *UnsafeResetError
	if errors.As(err, &unsafe) {
		return ResetResult{}, err
	}
	if err != nil {
		return ResetResult{}, fmt.Errorf("pgsink: reset %s to %s: %w", name, pos, err)
	}
	return res, nil
}
