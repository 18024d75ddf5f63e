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
	// LagEvents is how many committed events the projection has yet to
	// apply: those up to Head, plus HeldBackEvents. On a store that is an
	// [es.Counter] it is exact. On other stores the events up to Head are
	// counted by reading the log, at most LagCountLimit of them; beyond
	// that LagEstimated is set and LagEvents is a lower bound. Positions
	// are never subtracted to make up a count: on esdbstore they are byte
	// offsets, and even on pgstore their Prepare parts interleave.
	LagEvents int64
	// LagEstimated says that LagEvents is a lower bound, not a count.
	LagEstimated bool
	// HeldBackEvents counts the committed events beyond Head that readers
	// cannot see yet because an older transaction is still running
	// (reported by stores that are an [es.BacklogReporter]). They are part
	// of LagEvents: the projection applies them once the transaction ends.
	HeldBackEvents int64
	// Lag is how long the first event the projection has not applied has been
	// stored: 0 when it is caught up.
	Lag time.Duration
	// LastError is the last event the projection could not handle, if any,
	// or the transient error it is retrying (State is then StateRetrying).
	LastError *Failure
	UpdatedAt time.Time
	// HeldBack says, when not empty, that readers of the log are held back
	// by an open transaction, how many committed events wait behind it and,
	// with StatusOptions.HeldBack, which transaction it is.
	HeldBack string
}

// StatusOptions are the sources [ReadStatus] reads.
type StatusOptions struct {
	Store       es.Store
	Checkpoints Checkpoints
	// HeldBack, when set, reports whether readers of the log are held back
	// by an open transaction, and which one: pgstore's Store.HeldBackReason,
	// say.
	HeldBack func(ctx context.Context) (string, bool, error)
}

// LagCountLimit is how many events [ReadStatus] reads at most to count a
// projection's lag on a store that cannot count them itself (one that is
// not an [es.Counter]).
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
	st, err := readStatus(ctx, opts, name)
	if err != nil {
		return Status{}, fmt.Errorf("projections: status of %s: %w", name, err)
	}
	return st, nil
}

func readStatus(ctx context.Context, opts StatusOptions, name string) (Status, error) {
	cp, err := opts.Checkpoints.Checkpoint(ctx, name)
	if err != nil {
		return Status{}, err
	}
	// The head and what is held back beyond it come from one view of the
	// log when the store can report both.
	var backlog es.Backlog
	if br, ok := opts.Store.(es.BacklogReporter); ok {
		if backlog, err = br.Backlog(ctx); err != nil {
			return Status{}, err
		}
	} else if backlog.Head, err = opts.Store.Head(ctx); err != nil {
		return Status{}, err
	}
	head := backlog.Head
	st := Status{
		Name: name, State: cp.State, Checkpoint: cp.Position, Head: head,
		LastError: cp.Failure, UpdatedAt: cp.UpdatedAt,
	}
	if cp.State == StateRunning && cp.Failure != nil && cp.Failure.Retrying {
		st.State = StateRetrying
	}
	var oldest time.Time
	if cp.Position.Before(head) {
		if c, ok := opts.Store.(es.Counter); ok {
			if st.LagEvents, err = c.CountEvents(ctx, cp.Position, head); err != nil {
				return Status{}, err
			}
			recs, err := opts.Store.ReadAll(ctx, cp.Position, 1)
			if err != nil {
				return Status{}, err
			}
			if len(recs) > 0 {
				oldest = recs[0].RecordedAt
			}
		} else {
			n, first, counted, err := countLag(ctx, opts.Store, cp.Position, head)
			if err != nil {
				return Status{}, err
			}
			st.LagEvents, oldest, st.LagEstimated = n, first, !counted
		}
	}
	behind := ""
	if backlog.Events > 0 {
		st.HeldBackEvents = backlog.Events
		st.LagEvents += backlog.Events
		if oldest.IsZero() {
			oldest = backlog.Since
		}
		behind = fmt.Sprintf(", with %d committed %s behind it", backlog.Events, plural(backlog.Events, "event", "events"))
		st.HeldBack = "held back by an open transaction" + behind
	}
	if !oldest.IsZero() {
		st.Lag = max(time.Since(oldest), 0)
	}
	if opts.HeldBack != nil {
		h, held, err := opts.HeldBack(ctx)
		if err != nil {
			return Status{}, err
		}
		if held {
			st.HeldBack = h + behind
		}
	}
	return st, nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
