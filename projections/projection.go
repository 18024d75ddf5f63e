package projections

import (
	"context"

	"github.com/stratadev/strata/es"
)

// Event is a record of the log with its data decoded through the worker's
// [es.Registry].
type Event struct {
	Record es.Record
	// Data is the decoded event, a value of its registered Go type.
	Data any
}

// Projection builds a read model from events. Tx is what the [Sink] hands
// to the handler: for projections/pgsink a *pgsink.Tx, an open transaction
// that also commits the checkpoint.
type Projection[Tx any] interface {
	// Name identifies the projection and its checkpoint. It must be stable
	// across deployments.
	Name() string
	// Handles lists the event types the projection handles. Older types
	// that the worker's [es.Registry] upcasts into one of them need not be
	// listed: the worker hands them over too, upcast (see
	// [es.Registry.Upcasted]). Events of other types are skipped; events
	// of these types that do not decode, and old events whose upcaster
	// fails, follow the error policy.
	Handles() []string
	// HandleBatch applies events, in log order, through tx. An error rolls
	// the whole batch back. When a batch of several events fails, the worker
	// applies them again one at a time to find the event at fault, so
	// HandleBatch must not keep state outside tx between calls.
	HandleBatch(ctx context.Context, tx Tx, events []Event) error
}
