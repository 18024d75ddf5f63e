package kafkasink

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Keeper keeps a [Sink]'s projection state in PostgreSQL, next to every
// other projection's: a mirror of the checkpoint (Kafka's is
// authoritative), the state (running, paused, stalled), the error being
// retried, the dead letters and the leases. So `strata projections status`,
// pause and resume, [projections.WaitFor] and the worker see a Kafka
// projection as any other. A *pgsink.Sink is one; the sink needs no more of
// it than this.
type Keeper interface {
	projections.Checkpoints
	projections.Locker
	projections.CheckpointWatcher
	projections.RetryRecorder

	// ApplyTx is a batch: in one transaction it checks that the
	// checkpoint is at p.From and the projection is not paused, runs
	// handle (when p.Events is not empty), stores p.DeadLetters (a dead
	// letter stored before is not stored twice) and moves the checkpoint
	// to p.To, as a [projections.Sink]'s Apply does.
	ApplyTx(ctx context.Context, p projections.ApplyParams, handle func(context.Context, pgx.Tx) error) error
	// Reset moves the checkpoint of name to pos.
	Reset(ctx context.Context, name string, pos es.Position) error
	// Transient reports whether an error of the keeper is worth retrying.
	Transient(err error) bool
}
