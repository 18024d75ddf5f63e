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
	// LagEvents is how many events the projection has yet to apply, up to
	// Head. It is counted by reading the log when it is at most
	// LagCountLimit; beyond that LagEstimated is set, and LagEvents is
	// estimated from the Prepare parts of Head and Checkpoint (and is at
	// least LagCountLimit).
	LagEvents    int64
	LagEstimated bool
	// Lag is how long the first event the projection has not applied has been
	// stored: 0 when it is caught up.
	Lag time.Duration
	// LastError is the last event the projection could not handle, if any,
	// or the transient error it is retrying (State is then StateRetrying).
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

// LagCountLimit is how many events [ReadStatus] reads at most to count a
// projection's lag.
const LagCountLimit = 10_000

// countLag counts the events after after up to head, reading at most
// LagCountLimit of them, and returns when the first was recorded.
func countLag(ctx context.Context, store es.Store, after, head es.Position) (n int64, oldest time.Time, counted bool, err error) {
	const page = 1000
	for n < LagCountLimit {
		recs, err := store.ReadAll(ctx, after, page)
		if err != nil {
			return 0, time.Time{}, false, err
		}
		for _, r := range recs {
			if head.Before(r.Position) {
				return n, oldest, true, nil
			}
			if n == 0 {
				oldest = r.RecordedAt
			}
			n++
		}
		if len(recs) < page {
			return n, oldest, true, nil
		}
		after = recs[len(recs)-1].Position
	}
	return n, oldest, false, nil
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
	if cp.State == StateRunning && cp.Failure != nil && cp.Failure.Retrying {
		st.State = StateRetrying
	}
	if cp.Position.Before(head) {
		n, oldest, counted, err := countLag(ctx, opts.Store, cp.Position, head)
		if err != nil {
			return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
		}
		st.LagEvents = n
		if !counted {
			st.LagEstimated = true
			if head.Prepare > cp.Position.Prepare {
				st.LagEvents = max(n, int64(head.Prepare-cp.Position.Prepare))
			}
		}
		if !oldest.IsZero() {
			st.Lag = max(time.Since(oldest), 0)
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
