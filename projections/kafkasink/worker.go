package kafkasink

import (
	"context"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// NewWorker returns a worker that runs p on s. Unlike a worker made with
// projections.NewWorker, which works too, it starts the projection's
// producer when it reads its checkpoint, before the first batch: the
// producer aborts what an earlier one left open and the worker starts
// from the checkpoint in Kafka, which is authoritative, rather than from
// the keeper's copy. NewWorker panics like projections.NewWorker.
func NewWorker(store es.Store, reg *es.Registry, s *Sink, p projections.Projection[*Tx], cfg projections.Config) *projections.Worker[*Tx] {
	return projections.NewWorker(store, reg, projections.Sink[*Tx](&live{Sink: s}), p, cfg)
}

// live is the sink as a worker made with NewWorker sees it.
type live struct{ *Sink }

// Checkpoint starts the projection, then reads its checkpoint.
func (l *live) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	pr, err := l.started(ctx, name)
	defer pr.mu.Unlock()
	if err != nil {
		return projections.Checkpoint{}, err
	}
	return l.checkpoint(ctx, pr)
}
