package cqrs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/stratadev/strata/es"
)

// findPage is how many records one read of the idempotency search returns.
const findPage = 100

// findCommand looks among the latest window events of stream for the events
// that the command of type name with ID commandID appended: a run of
// consecutive events whose IDs are EventID(name, commandID, 0), 1, 2 and so
// on. It returns the run's first event and the result of its last. A window
// of 0 looks for the run at the start of the stream instead, and a negative
// window searches the whole stream.
func findCommand(ctx context.Context, store es.Store, stream, name, commandID string, window int) (es.Record, Result, bool, error) {
	first := EventID(name, commandID, 0)
	if window == 0 {
		recs, err := store.ReadStream(ctx, stream, es.ReadStreamOptions{Limit: 1})
		switch {
		case errors.Is(err, es.ErrStreamNotFound):
			return es.Record{}, Result{}, false, nil
		case err != nil:
			return es.Record{}, Result{}, false, err
		case recs[0].ID != first:
			return es.Record{}, Result{}, false, nil
		}
		return runEnd(ctx, store, recs[0], name, commandID)
	}
	from := int64(0) // reading backwards, 0 is the last event
	for searched := 0; window < 0 || searched < window; {
		limit := findPage
		if window > 0 {
			limit = min(findPage, window-searched)
		}
		recs, err := store.ReadStream(ctx, stream, es.ReadStreamOptions{Direction: es.Backwards, From: from, Limit: limit})
		if errors.Is(err, es.ErrStreamNotFound) {
			return es.Record{}, Result{}, false, nil
		}
		if err != nil {
			return es.Record{}, Result{}, false, err
		}
		for _, rec := range recs {
			if rec.ID == first {
				return runEnd(ctx, store, rec, name, commandID)
			}
		}
		searched += len(recs)
		if len(recs) < limit || recs[len(recs)-1].Version <= 1 {
			return es.Record{}, Result{}, false, nil
		}
		from = recs[len(recs)-1].Version - 1
	}
	return es.Record{}, Result{}, false, nil
}

// runEnd follows the run of a command's events that starts with first and
// returns first and the result of the run's last event.
func runEnd(ctx context.Context, store es.Store, first es.Record, name, commandID string) (es.Record, Result, bool, error) {
	last, next := first, 1
	for {
		recs, err := store.ReadStream(ctx, first.Stream, es.ReadStreamOptions{From: last.Version + 1, Limit: findPage})
		if err != nil && !errors.Is(err, es.ErrStreamNotFound) {
			return es.Record{}, Result{}, false, err
		}
		for _, rec := range recs {
			if rec.ID != EventID(name, commandID, next) {
				return first, resultOf(last), true, nil
			}
			last, next = rec, next+1
		}
		if len(recs) < findPage {
			return first, resultOf(last), true, nil
		}
	}
}

// commandHash returns the hex SHA-256 of cmd's JSON encoding, which
// [MetaCommandHash] stores.
func commandHash(cmd any) (string, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// sameCommand reports whether rec, the first event of an earlier dispatch
// of a command with the same type and ID, was appended by a command with
// the given hash. Events stored without a hash (by an earlier version of
// this package) cannot be compared and count as the same.
func sameCommand(rec es.Record, hash string) bool {
	stored, ok := rec.Metadata[MetaCommandHash]
	return !ok || stored == hash
}

func resultOf(rec es.Record) Result {
	return Result{Stream: rec.Stream, Version: rec.Version, Position: rec.Position}
}
