package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/stratadev/strata/es"
)

// Status is what a projection is doing and how far behind it is.
type Status struct {
	Name       string
	State      State
	Checkpoint es.Position
	// Head is the position of the last event readers can see.
	Head es.Position
	// LagEvents estimates how many events the projection has yet to apply,
	// from the Prepare parts of Head and Checkpoint: exact for stores that
	// number the log with one sequence (pgstore, memstore) and nothing rolled
	// back in between, an upper bound otherwise.
	LagEvents int64
	// Lag is how long the first event the projection has not applied has been
	// stored: 0 when it is caught up.
	Lag time.Duration
	// LastError is the last event the projection could not handle, if any.
	LastError *Failure
	UpdatedAt time.Time
	// HeldBack says, when not empty, that readers of the log are held back
	// by an open transaction, and which (see StatusOptions.HeldBack).
	HeldBack string
}

// StatusOptions are the sources [ReadStatus] reads.
type StatusOptions struct {
	Store       es.Store
	Checkpoints Checkpoints
	// HeldBack, when set, reports whether readers of the log are held back
	// by an open transaction, and which one. pgsink.HeldBack adapts
	// pgstore's.
	HeldBack func(ctx context.Context) (string, bool, error)
}

// ReadStatus reports the status of the named projection.
func ReadStatus(ctx context.Context, opts StatusOptions, name string) (Status, error) {
	cp, err := opts.Checkpoints.Checkpoint(ctx, name)
	if err != nil {
		return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
	}
	head, err := opts.Store.Head(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
	}
	st := Status{
		Name: name, State: cp.State, Checkpoint: cp.Position, Head: head,
		LastError: cp.Failure, UpdatedAt: cp.UpdatedAt,
	}
	if cp.Position.Before(head) {
		st.LagEvents = 1
		if head.Prepare > cp.Position.Prepare {
			st.LagEvents = int64(head.Prepare - cp.Position.Prepare)
		}
		next, err := opts.Store.ReadAll(ctx, cp.Position, 1)
		if err != nil {
			return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
		}
		if len(next) > 0 {
			st.Lag = max(time.Since(next[0].RecordedAt), 0)
		}
	}
	if opts.HeldBack != nil {
		h, held, err := opts.HeldBack(ctx)
		if err != nil {
			return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
		}
		if held {
			st.HeldBack = h
		}
	}
	return st, nil
}
