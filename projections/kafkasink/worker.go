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
// the keeper's copy. And it sends the messages of each HandleBatch before
// the handler returns, so that a message Kafka refuses for what it is (too
// large, say) fails the handler and follows the error policy at the event
// that published it; with projections.NewWorker such a refusal fails the
// batch, and Run returns the error. NewWorker panics like
// projections.NewWorker.
func NewWorker(store es.Store, reg *es.Registry, s *Sink, p projections.Projection[*Tx], cfg projections.Config) *projections.Worker[*Tx] {
	return projections.NewWorker(store, reg, projections.Sink[*Tx](&live{Sink: s}), projections.Projection[*Tx](flushing{p}), cfg)
}

// flushing sends the messages at the end of each HandleBatch.
type flushing struct{ projections.Projection[*Tx] }

func (f flushing) HandleBatch(ctx context.Context, tx *Tx, events []projections.Event) error {
	if err := f.Projection.HandleBatch(ctx, tx, events); err != nil {
		return err
	}
	return tx.flush(ctx)
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
