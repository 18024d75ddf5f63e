package cqrs

import (
	"context"
	"errors"

	"github.com/stratadev/strata/es"
)

// findPage is how many records one read of the idempotency search returns.
const findPage = 100

// findCommand looks among the latest window events of stream for the events
// that the command of type name with ID commandID appended: a run of
// consecutive events whose IDs are EventID(name, commandID, 0), 1, 2 and so
// on. It returns the result of the run's last event. A window of 0 looks for
// the run at the start of the stream instead.
func findCommand(ctx context.Context, store es.Store, stream, name, commandID string, window int) (Result, bool, error) {
	first := EventID(name, commandID, 0)
	if window == 0 {
		recs, err := store.ReadStream(ctx, stream, es.ReadStreamOptions{Limit: 1})
		switch {
		case errors.Is(err, es.ErrStreamNotFound):
			return Result{}, false, nil
		case err != nil:
			return Result{}, false, err
		case recs[0].ID != first:
			return Result{}, false, nil
		}
		return runEnd(ctx, store, recs[0], name, commandID)
	}
	from := int64(0) // reading backwards, 0 is the last event
	for searched := 0; searched < window; {
		limit := min(findPage, window-searched)
		recs, err := store.ReadStream(ctx, stream, es.ReadStreamOptions{Direction: es.Backwards, From: from, Limit: limit})
		if errors.Is(err, es.ErrStreamNotFound) {
			return Result{}, false, nil
		}
		if err != nil {
			return Result{}, false, err
		}
		for _, rec := range recs {
			if rec.ID == first {
				return runEnd(ctx, store, rec, name, commandID)
			}
		}
		searched += len(recs)
		if len(recs) < limit || recs[len(recs)-1].Version <= 1 {
			return Result{}, false, nil
		}
		from = recs[len(recs)-1].Version - 1
	}
	return Result{}, false, nil
}

// runEnd follows the run of a command's events that starts with first and
// returns the result of its last event.
func runEnd(ctx context.Context, store es.Store, first es.Record, name, commandID string) (Result, bool, error) {
	last, next := first, 1
	for {
		recs, err := store.ReadStream(ctx, first.Stream, es.ReadStreamOptions{From: last.Version + 1, Limit: findPage})
		if err != nil && !errors.Is(err, es.ErrStreamNotFound) {
			return Result{}, false, err
		}
		for _, rec := range recs {
			if rec.ID != EventID(name, commandID, next) {
				return resultOf(last), true, nil
			}
			last, next = rec, next+1
		}
		if len(recs) < findPage {
			return resultOf(last), true, nil
		}
	}
}

func resultOf(rec es.Record) Result {
	return Result{Stream: rec.Stream, Version: rec.Version, Position: rec.Position}
}
