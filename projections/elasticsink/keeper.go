package elasticsink

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Keeper keeps a [Sink]'s checkpoints, leases and dead letters in
// PostgreSQL, next to the table the sink keeps there itself
// (elasticsink_checkpoints, whose counter is written in the transaction
// that moves the checkpoint). A *pgsink.Sink is one; the sink needs no
// more of it than this.
type Keeper interface {
	projections.Checkpoints
	projections.Locker
	projections.CheckpointWatcher
	projections.RetryRecorder

	// ApplyTx is a batch: in one transaction it checks that the
	// checkpoint is at p.From, runs handle, stores p.DeadLetters and moves
	// the checkpoint to p.To, as a [projections.Sink]'s Apply does. It
	// may skip handle when p.Events is empty (a *pgsink.Sink does); the
	// sink writes its record before such a batch moves the checkpoint off
	// the start of the log. The transaction should get no ID before
	// handle returns (a *pgsink.Sink holds the checkpoint with an
	// advisory lock, not a row lock): handle waits on Elasticsearch, and
	// pgstore's readers wait for every transaction with an ID.
	ApplyTx(ctx context.Context, p projections.ApplyParams, handle func(context.Context, pgx.Tx) error) error
	// BeginTx runs fn in a transaction and commits it when fn returns nil.
	BeginTx(ctx context.Context, fn func(context.Context, pgx.Tx) error) error
	// Reset moves the checkpoint of name to pos.
	Reset(ctx context.Context, name string, pos es.Position) error
	// HoldCheckpoint locks the checkpoint of name, so that no batch of
	// the projection commits or starts until release is called. The sink
	// writes its record outside a batch only while it holds the
	// checkpoint, since batches read the record without a row lock.
	HoldCheckpoint(ctx context.Context, name string) (cp projections.Checkpoint, release func(), err error)
	// DeleteRebuildCheckpoint ends a rebuild that was swapped in: it
	// deletes the checkpoint of name + [projections.RebuildSuffix] and
	// gives its dead letters to name.
	DeleteRebuildCheckpoint(ctx context.Context, name string) error
	// EnsureMigrated creates or upgrades the keeper's tables.
	EnsureMigrated(ctx context.Context) error
	// Transient reports whether an error of the keeper is worth retrying.
	Transient(err error) bool
	// Pool and Schema are where the sink keeps elasticsink_checkpoints:
	// the keeper's pool and schema.
	Pool() *pgxpool.Pool
	Schema() string
}
