package elasticsink

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// NewWorker returns a worker that runs p on s. Unlike a worker made with
// projections.NewWorker, it sends the batch's documents before the
// handler's HandleBatch returns, so that a document Elasticsearch refuses
// fails the handler and follows the error policy (see [Sink.Apply]); and
// it checks, when it starts and before each batch, that the index behind
// p's alias is the one its checkpoint belongs to (see [IndexLostError] and
// [Config.OnIndexLost]). A new projection, whose checkpoint is at the
// start of the log, creates its index when there is none. NewWorker
// panics like projections.NewWorker.
func NewWorker(store es.Store, reg *es.Registry, s *Sink, p Projection, cfg projections.Config) *projections.Worker[*Tx] {
	return projections.NewWorker(store, reg, projections.Sink[*Tx](&live{Sink: s, proj: p}), projections.Projection[*Tx](flushing{p}), cfg)
}

// flushing sends the documents at the end of each HandleBatch.
type flushing struct{ Projection }

func (f flushing) HandleBatch(ctx context.Context, tx *Tx, events []projections.Event) error {
	if err := f.Projection.HandleBatch(ctx, tx, events); err != nil {
		return err
	}
	return tx.Flush(ctx)
}

// live is the sink as a worker made with NewWorker sees it: it knows the
// projection, and so the alias whose index it guards.
type live struct {
	*Sink
	proj Projection
}

func (l *live) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	err := l.apply(ctx, p, target{main: l.proj.Index().Alias, proj: l.proj}, handle)
	if lost := (*IndexLostError)(nil); errors.As(err, &lost) {
		return l.indexLost(ctx, p.Projection, lost)
	}
	return err
}

// Checkpoint is the worker's first call when it starts: a lost index stops
// it then, not at the next event.
func (l *live) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	cp, err := l.Sink.Checkpoint(ctx, name)
	if err != nil || cp.State != projections.StateRunning {
		return cp, err
	}
	err = l.checkIndex(ctx, name, l.proj.Index().Alias, cp.Position)
	if lost := (*IndexLostError)(nil); errors.As(err, &lost) {
		if err = l.indexLost(ctx, name, lost); errors.Is(err, projections.ErrCheckpointMoved) {
			return l.Sink.Checkpoint(ctx, name)
		}
	}
	return cp, err
}

// indexLost stalls the projection, or rebuilds its index under
// RebuildIndex.
func (l *live) indexLost(ctx context.Context, name string, lost *IndexLostError) error {
	log := l.cfg.Logger.With(slog.String("projection", name), slog.String("alias", lost.Alias),
		slog.String("checkpoint", lost.Checkpoint.String()), slog.String("want", lost.Want), slog.String("got", lost.Got))
	if l.cfg.OnIndexLost == RebuildIndex {
		log.WarnContext(ctx, "elasticsink: index lost; filling a new one from the start of the log")
		if err := l.recreate(ctx, name); err != nil {
			return err
		}
		return &projections.CheckpointMovedError{Projection: name, Expected: lost.Checkpoint, Actual: es.Start}
	}
	f := projections.Failure{Position: lost.Checkpoint, Error: lost.Error(), At: time.Now().UTC()}
	if err := l.SetState(ctx, name, projections.StateStalled, &f); err != nil {
		return err
	}
	log.ErrorContext(ctx, "elasticsink: index lost; projection stalled")
	return &projections.StalledError{Projection: name, Failure: f}
}

// recreate resets the checkpoint to the start of the log, then puts a new
// generation behind the alias. A crash in between leaves a checkpoint at
// the start, which fills whatever index is behind the alias.
func (l *live) recreate(ctx context.Context, name string) error {
	ix := l.proj.Index()
	if err := l.pg.Reset(ctx, name, es.Start); err != nil {
		return err
	}
	cur, err := l.aliasIndices(ctx, ix.Alias)
	if err != nil {
		return err
	}
	index, err := l.newGeneration(ctx, ix, meta{Alias: ix.Alias})
	if err != nil {
		return err
	}
	return l.moveAlias(ctx, ix.Alias, cur, index)
}
