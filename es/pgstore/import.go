package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/es"
)

// ImportEvent is one event for [Store.Import] and the stream it goes to.
type ImportEvent struct {
	Stream string
	Event  es.EventData
	// RecordedAt keeps the event's original time. Zero means the time of
	// the import.
	RecordedAt time.Time
}

// ImportResult says what [Store.Import] wrote.
type ImportResult struct {
	Streams int // streams created
	Events  int // events written
	// Position is the position of the last event written, [es.Start] when
	// there was none.
	Position es.Position
}

// Import loads a history into streams that do not exist yet, with COPY, in
// one transaction: all of it or nothing. It is for migrations from another
// store and for seeding large test data; it is much faster than appending.
//
// The events come from events in the order they go into the global log. A
// stream's events need not be consecutive: each one's version is one more
// than the previous event of its stream in the sequence, starting at 1. An
// error from the sequence aborts the import.
//
// Each event is validated like an append; invalid input returns an
// [*es.InvalidEventError] whose Index counts events from the start of the
// sequence. A stream that already exists returns an
// [*es.VersionConflictError] with Expected [es.NoStream], like appending to
// it with NoStream would; an event ID that is already stored returns an
// [*es.DuplicateEventIDError].
func (s *Store) Import(ctx context.Context, events iter.Seq2[ImportEvent, error]) (ImportResult, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return ImportResult{}, fmt.Errorf("pgstore: import: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var now time.Time
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.now()`).Scan(&now); err != nil {
		return ImportResult{}, fmt.Errorf("pgstore: import: %w", err)
	}
	next, stop := iter.Pull2(events)
	defer stop()
	src := &importSource{next: next, now: now, versions: make(map[string]int64), limits: es.SizeLimits{MaxEventSize: s.limits.MaxEventSize}}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{s.cfg.Schema, "events"},
		[]string{"event_id", "stream_id", "stream_version", "type", "data", "metadata", "recorded_at"}, src)
	if err != nil {
		return ImportResult{}, s.importError(ctx, src, err)
	}
	if n == 0 {
		return ImportResult{}, nil
	}

	res := ImportResult{Streams: len(src.versions), Events: int(n)}
	var prepare int64
	if err := tx.QueryRow(ctx, s.expand(`SELECT tx_id, position FROM {{schema}}.events
		WHERE tx_id = pg_current_xact_id() ORDER BY position DESC LIMIT 1`)).Scan(&res.Position.Commit, &prepare); err != nil {
		return ImportResult{}, fmt.Errorf("pgstore: import: %w", err)
	}
	res.Position.Prepare = uint64(prepare)
	if _, err := tx.Exec(ctx, s.q.notify); err != nil {
		return ImportResult{}, fmt.Errorf("pgstore: import: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return ImportResult{}, fmt.Errorf("pgstore: import: commit: %w", err)
	}
	return res, nil
}

// importSource feeds CopyFrom from the pulled sequence, validating and
// numbering the events as they pass.
type importSource struct {
	next     func() (ImportEvent, error, bool)
	now      time.Time
	versions map[string]int64 // stream → version of its last event so far
	index    int              // index of the current event in the sequence
	limits   es.SizeLimits    // MaxEventSize only: an import is no append
	row      []any
	err      error
}

func (src *importSource) Next() bool {
	if src.err != nil {
		return false
	}
	ev, err, ok := src.next()
	if !ok {
		return false
	}
	if err != nil {
		src.err = fmt.Errorf("pgstore: import: event %d: %w", src.index, err)
		return false
	}
	i := src.index
	src.index++
	e := ev.Event
	err = es.ValidateAppend(ev.Stream, []es.EventData{e})
	if err == nil {
		err = src.limits.Check(ev.Stream, []es.EventData{e})
	}
	if err != nil {
		var inv *es.InvalidEventError
		if errors.As(err, &inv) && inv.Index >= 0 {
			inv.Index = i
		}
		src.err = err
		return false
	}
	if e.ID == uuid.Nil {
		if e.ID, err = uuid.NewV7(); err != nil {
			src.err = fmt.Errorf("pgstore: import: new event id: %w", err)
			return false
		}
	}
	md, err := encodeMetadata(e.Metadata)
	if err != nil {
		src.err = &es.InvalidEventError{Stream: ev.Stream, Index: i, Type: e.Type, Reason: "metadata: " + err.Error()}
		return false
	}
	v := src.versions[ev.Stream] + 1
	src.versions[ev.Stream] = v
	at := ev.RecordedAt
	if at.IsZero() {
		at = src.now
	}
	src.row = append(src.row[:0], [16]byte(e.ID), ev.Stream, v, e.Type, e.Data, md, at)
	return true
}

func (src *importSource) Values() ([]any, error) { return src.row, nil }
func (src *importSource) Err() error             { return src.err }

// importError explains a failed import: the source's own error as it is,
// and unique violations as an existing stream or a duplicate event ID.
func (s *Store) importError(ctx context.Context, src *importSource, err error) error {
	if src.err != nil {
		return src.err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation {
		switch pgErr.ConstraintName {
		case "events_event_id_key":
			return &es.DuplicateEventIDError{Stream: "", ID: idFromDetail(pgErr.Detail)}
		case "events_pkey":
			// The transaction is aborted: look on a connection of the pool.
			if stream, v, ok := s.existingStream(ctx, src); ok {
				return &es.VersionConflictError{Stream: stream, Expected: es.NoStream, Actual: v}
			}
		}
	}
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22" {
		return &es.InvalidEventError{Index: -1, Reason: "refused by PostgreSQL: " + pgErr.Message}
	}
	return fmt.Errorf("pgstore: import: %w", err)
}

// existingStream finds one of the imported streams that already exists.
func (s *Store) existingStream(ctx context.Context, src *importSource) (string, int64, bool) {
	streams := make([]string, 0, len(src.versions))
	for stream := range src.versions {
		streams = append(streams, stream)
	}
	var (
		stream string
		v      int64
	)
	if err := s.pool.QueryRow(ctx, s.q.existing, streams).Scan(&stream, &v); err != nil {
		return "", 0, false
	}
	return stream, v, true
}
