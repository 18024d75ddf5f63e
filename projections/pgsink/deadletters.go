package pgsink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// ErrNoDeadLetter means a dead letter was not there: never parked, or
// retried or deleted meanwhile.
var ErrNoDeadLetter = errors.New("pgsink: no such dead letter")

// DeadLetters returns the events parked for a projection ("" for every
// projection) by [projections.PolicyDeadLetter], in log order; ids, when
// given, select some of them by event ID. Failure.At is when the event was
// parked. IDs that name no dead letter are left out of the result.
func (s *Sink) DeadLetters(ctx context.Context, name string, ids ...uuid.UUID) ([]projections.DeadLetter, error) {
	rows, err := s.pool.Query(ctx, s.expand(`SELECT projection, event_id, stream_id, stream_version, commit_pos, prepare_pos,
			type, data, metadata, recorded_at, error, parked_at
		FROM {{schema}}.projection_dead_letters
		WHERE ($1 = '' OR projection = $1) AND (cardinality($2::uuid[]) = 0 OR event_id = ANY($2))
		ORDER BY commit_pos, prepare_pos, projection`), name, nonNil(ids))
	if err != nil {
		return nil, fmt.Errorf("pgsink: read dead letters of %q: %w", name, err)
	}
	defer rows.Close()
	out := []projections.DeadLetter{}
	for rows.Next() {
		var (
			d               projections.DeadLetter
			commit, prepare int64
			md              []byte
		)
		r := &d.Record
		if err := rows.Scan(&d.Projection, &r.ID, &r.Stream, &r.Version, &commit, &prepare,
			&r.Type, &r.Data, &md, &r.RecordedAt, &d.Failure.Error, &d.Failure.At); err != nil {
			return nil, fmt.Errorf("pgsink: read dead letters of %q: %w", name, err)
		}
		r.Position = es.Position{Commit: uint64(commit), Prepare: uint64(prepare)}
		if len(md) > 0 && string(md) != "{}" {
			if err := json.Unmarshal(md, &r.Metadata); err != nil {
				return nil, fmt.Errorf("pgsink: read dead letter %s of %s: metadata: %w", r.ID, d.Projection, err)
			}
		}
		d.Failure.Stream, d.Failure.Version, d.Failure.Position, d.Failure.Type = r.Stream, r.Version, r.Position, r.Type
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgsink: read dead letters of %q: %w", name, err)
	}
	return out, nil
}

func nonNil(ids []uuid.UUID) []uuid.UUID {
	if ids == nil {
		return []uuid.UUID{}
	}
	return ids
}

// DeleteDeadLetters deletes the dead letters of a projection with those
// event IDs, for good: the projection will not apply those events (its
// checkpoint is past them; the events stay in the log). It returns how many
// it deleted; IDs that name no dead letter are ignored. No IDs delete
// nothing.
func (s *Sink) DeleteDeadLetters(ctx context.Context, name string, ids []uuid.UUID) (int64, error) {
	tag, err := s.pool.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_dead_letters
		WHERE projection = $1 AND event_id = ANY($2)`), name, nonNil(ids))
	if err != nil {
		return 0, fmt.Errorf("pgsink: delete dead letters of %s: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

// RetryDeadLetter hands a parked event to p's handler again, decoded
// through reg, in one transaction that also deletes it from p's dead
// letters: the handler's writes and the deletion take effect together or
// not at all. When the handler fails, the event stays parked and the
// handler's error is returned. When the event is no longer parked (another
// retry got there first), the handler is not called and the error wraps
// [ErrNoDeadLetter].
//
// The event is applied after the events that followed it in the log, which
// is right only when p's handling of it does not depend on order.
func (s *Sink) RetryDeadLetter(ctx context.Context, reg *es.Registry, p projections.Projection[*Tx], d projections.DeadLetter) error {
	name, rec := p.Name(), d.Record
	err := s.BeginFunc(ctx, func(ctx context.Context, tx *Tx) error {
		// The deletion first: it locks the row, so that a concurrent retry
		// of the same event waits for this one and then finds nothing.
		tag, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_dead_letters
			WHERE projection = $1 AND event_id = $2`), name, rec.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNoDeadLetter
		}
		data, err := reg.Decode(rec)
		if err != nil {
			return err
		}
		return p.HandleBatch(ctx, tx, []projections.Event{{Record: rec, Data: data}})
	})
	if err != nil {
		return fmt.Errorf("pgsink: retry dead letter %s@%d (event %s) of %s: %w", rec.Stream, rec.Version, rec.ID, name, err)
	}
	return nil
}

// adoptDeadLetters makes the dead letters parked under from those of to,
// in tx: to's own are deleted first, since they describe the generation
// that from's replaces.
func (s *Sink) adoptDeadLetters(ctx context.Context, tx pgx.Tx, from, to string) error {
	if _, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_dead_letters WHERE projection = $1`), to); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, s.expand(`UPDATE {{schema}}.projection_dead_letters SET projection = $2 WHERE projection = $1`), from, to)
	return err
}

// DeleteRebuildCheckpoint ends a rebuild of a projection that builds its
// new generation under a checkpoint of its own (name + [projections.RebuildSuffix]) and
// swaps it in by itself, as elasticsink's does: one transaction deletes
// that checkpoint and makes the dead letters parked under it the
// projection's, in place of the projection's own (every event those covered
// was handed to the new generation, which applied it or parked it again).
// When that checkpoint is gone already, it does nothing, so a swap that was
// cut short may call it again. [Sink.Rebuild] does this in its swap.
func (s *Sink) DeleteRebuildCheckpoint(ctx context.Context, name string) error {
	err := s.locked(ctx, name+projections.RebuildSuffix, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_checkpoints WHERE name = $1`), name+projections.RebuildSuffix)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return s.adoptDeadLetters(ctx, tx, name+projections.RebuildSuffix, name)
	})
	if err != nil {
		return fmt.Errorf("pgsink: delete the rebuild checkpoint of %s: %w", name, err)
	}
	return nil
}
