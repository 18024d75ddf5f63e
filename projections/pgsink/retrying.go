package pgsink

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections"
)

var _ projections.RetryRecorder = (*Sink)(nil)

// SetRetrying implements [projections.RetryRecorder]: it records f as the
// last error of a running projection in the checkpoint table, where every
// status reader finds it ([projections.StateRetrying]), or clears such a
// record when f is nil. A worker calls it while it retries a transient
// error, for any sink that keeps its checkpoints here (elasticsink's
// too). When PostgreSQL itself is what fails, the record cannot be
// written; the worker's own state still says retrying.
func (s *Sink) SetRetrying(ctx context.Context, name string, f *projections.Failure) error {
	var (
		sql  string
		args = []any{name}
	)
	if f == nil {
		sql = s.expand(`UPDATE {{schema}}.projection_checkpoints SET failure = NULL, updated_at = now()
			WHERE name = $1 AND failure @> '{"Retrying": true}'`)
	} else {
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("pgsink: record the error %s is retrying: %w", name, err)
		}
		// A projection that fails its first batch has no row yet: the
		// row the batch would have created was rolled back with it.
		sql = s.expand(`INSERT INTO {{schema}}.projection_checkpoints AS c (name, failure) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET failure = excluded.failure, updated_at = now()
			WHERE c.state = 'running'`)
		args = append(args, b)
	}
	// Under the lock, as every write of a checkpoint (see lockCheckpoint).
	if err := s.locked(ctx, name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}); err != nil {
		return fmt.Errorf("pgsink: record the error %s is retrying: %w", name, err)
	}
	return nil
}
