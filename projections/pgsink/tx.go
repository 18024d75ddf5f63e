package pgsink

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Tx is the transaction a handler writes its read model through. It embeds
// the pgx.Tx that also commits the projection's checkpoint, so the
// handler's writes and the checkpoint take effect together or not at all.
// Handlers must not commit or roll it back.
type Tx struct {
	pgx.Tx
	readSchema string
	suffix     string // of the generation's table names
}

// Table returns the qualified name of a read-model table in the generation
// being written: name itself in the read schema, or the name of the new
// generation's table during a [Rebuild]. Handlers name every table through
// Table.
func (tx *Tx) Table(name string) pgx.Identifier {
	return pgx.Identifier{tx.readSchema, name + tx.suffix}
}

// Apply implements [projections.Sink]: one transaction takes the
// checkpoint's advisory lock, checks the checkpoint is at p.From, runs
// handle, stores the dead letters and moves the checkpoint to p.To. It
// holds no row lock, so the transaction gets an ID only when handle or
// the dead letters write, or at the end when the checkpoint moves (see
// the package documentation).
func (s *Sink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	return s.apply(ctx, p, "", handle)
}

func (s *Sink) apply(ctx context.Context, p projections.ApplyParams, suffix string, handle func(context.Context, *Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgsink: apply to %s: begin: %w", p.Projection, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var (
		commit, prepare int64
		state           string
	)
	if err := s.lockCheckpoint(ctx, tx, p.Projection); err != nil {
		return fmt.Errorf("pgsink: apply to %s: %w", p.Projection, err)
	}
	// Read, not locked: the advisory lock holds the checkpoint (see
	// lockCheckpoint), and the transaction gets no ID before it writes.
	// A projection without a row is at the start; advance creates it.
	state = string(projections.StateRunning)
	err = tx.QueryRow(ctx, s.q.at, p.Projection).Scan(&commit, &prepare, &state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pgsink: apply to %s: read checkpoint: %w", p.Projection, err)
	}
	if at := (es.Position{Commit: uint64(commit), Prepare: uint64(prepare)}); at != p.From {
		return &projections.CheckpointMovedError{Projection: p.Projection, Expected: p.From, Actual: at}
	}
	if projections.State(state) == projections.StatePaused {
		return fmt.Errorf("pgsink: apply to %s: %w", p.Projection, projections.ErrPaused)
	}
	if len(p.Events) > 0 {
		if err := handle(ctx, &Tx{Tx: tx, readSchema: s.cfg.ReadSchema, suffix: suffix}); err != nil {
			return err
		}
	}
	var lastFailure []byte
	for _, d := range p.DeadLetters {
		r := d.Record
		md := r.Metadata
		if md == nil {
			md = es.Metadata{}
		}
		if _, err := tx.Exec(ctx, s.q.insertDead, d.Projection, r.ID, r.Stream, r.Version,
			int64(r.Position.Commit), int64(r.Position.Prepare), r.Type, r.Data, md, r.RecordedAt, d.Failure.Error); err != nil {
			return fmt.Errorf("pgsink: apply to %s: park dead letter: %w", p.Projection, err)
		}
		f := d.Failure
		if lastFailure, err = failureJSON(&f); err != nil {
			return err
		}
	}
	if err := s.advance(ctx, tx, p.Projection, p.From, p.To, lastFailure); err != nil {
		return fmt.Errorf("pgsink: apply to %s: %w", p.Projection, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgsink: apply to %s: commit: %w", p.Projection, err)
	}
	return nil
}

// advance moves the checkpoint of name from from to to in tx, which holds
// its lock; it reports a [*projections.CheckpointMovedError] when the
// checkpoint is no longer at from.
func (s *Sink) advance(ctx context.Context, tx pgx.Tx, name string, from, to es.Position, failure []byte) error {
	tag, err := tx.Exec(ctx, s.q.advance, name, int64(to.Commit), int64(to.Prepare), failure,
		int64(from.Commit), int64(from.Prepare))
	if err != nil {
		return fmt.Errorf("move checkpoint: %w", err)
	}
	if tag.RowsAffected() == 0 {
		cp, err := s.checkpoint(ctx, tx, name)
		if err != nil {
			return err
		}
		return &projections.CheckpointMovedError{Projection: name, Expected: from, Actual: cp.Position}
	}
	return nil
}

// DeleteKeys deletes the rows of table whose column key is in keys (a
// slice of the column's Go type), in one statement.
func (tx *Tx) DeleteKeys(ctx context.Context, table pgx.Identifier, key, keyType string, keys any) (int64, error) {
	tag, err := tx.Exec(ctx, "DELETE FROM "+table.Sanitize()+" WHERE "+pgx.Identifier{key}.Sanitize()+
		" = ANY($1::"+keyType+"[])", keys)
	if err != nil {
		return 0, fmt.Errorf("pgsink: delete from %s: %w", table.Sanitize(), err)
	}
	return tag.RowsAffected(), nil
}

// BeginFunc runs fn in a transaction whose [Tx.Table] names the live
// read-model tables, and commits it when fn returns nil: to create the
// tables of a projection (its [Rebuildable.Setup]) or to change them
// outside a batch.
func (s *Sink) BeginFunc(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(ctx, &Tx{Tx: tx, readSchema: s.cfg.ReadSchema})
	})
}

// ApplyTx is [Sink.Apply] for a sink that keeps its checkpoints here but
// writes its read model elsewhere (elasticsink's Keeper): handle gets the
// batch's transaction as a pgx.Tx, which is a [*Tx].
func (s *Sink) ApplyTx(ctx context.Context, p projections.ApplyParams, handle func(context.Context, pgx.Tx) error) error {
	return s.apply(ctx, p, "", func(ctx context.Context, tx *Tx) error { return handle(ctx, tx) })
}

// BeginTx is [Sink.BeginFunc] for the same sinks as [Sink.ApplyTx]: fn
// gets the transaction as a pgx.Tx, which is a [*Tx].
func (s *Sink) BeginTx(ctx context.Context, fn func(context.Context, pgx.Tx) error) error {
	return s.BeginFunc(ctx, func(ctx context.Context, tx *Tx) error { return fn(ctx, tx) })
}
