package elasticsink

import (
	"context"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// NewWorker returns a worker that runs p on s. Unlike a worker made with
// projections.NewWorker, it sends the batch's documents before the
// handler's HandleBatch returns, so that a document Elasticsearch refuses
// fails the handler and follows the error policy (see [Sink.Apply]). It
// panics like projections.NewWorker.
func NewWorker(store es.Store, reg *es.Registry, s *Sink, p Projection, cfg projections.Config) *projections.Worker[*Tx] {
	return projections.NewWorker(store, reg, projections.Sink[*Tx](s), projections.Projection[*Tx](flushing{p}), cfg)
}

// flushing sends the documents at the end of each HandleBatch.
type flushing struct{ Projection }

func (f flushing) HandleBatch(ctx context.Context, tx *Tx, events []projections.Event) error {
	if err := f.Projection.HandleBatch(ctx, tx, events); err != nil {
		return err
	}
	return tx.Flush(ctx)
}
