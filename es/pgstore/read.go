package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgconnlost"
)

// ReadStream implements [es.Store]. Reads of one stream need no visibility
// gate: versions are assigned under the stream's lock, so a version cannot
// commit before the ones below it.
func (s *Store) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	if opts.From < 0 || opts.Limit < 0 {
		return nil, fmt.Errorf("pgstore: read %s: From (%d) and Limit (%d) must not be negative", stream, opts.From, opts.Limit)
	}
	var limit *int64
	if opts.Limit > 0 {
		l := int64(opts.Limit)
		limit = &l
	}
	query, from := s.q.readForwards, opts.From
	if opts.Direction == es.Backwards {
		query = s.q.readBackwards
		if from == 0 {
			from = math.MaxInt64
		}
	}
	recs, err := readAgain(ctx, s.pool, func() ([]es.Record, error) {
		rows, err := s.pool.Query(ctx, query, stream, from, limit)
		if err != nil {
			return nil, err
		}
		// Most streams are short, and aggregates load with a generous
		// limit: start small and let the slice grow.
		return collectRecords(rows, min(opts.Limit, 32))
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: read %s: %w", stream, err)
	}
	s.metrics.read(ctx, false, len(recs))
	if len(recs) == 0 {
		// Empty: a missing stream, or a range beyond its end.
		var exists bool
		if err := s.pool.QueryRow(ctx, s.q.streamExists, stream).Scan(&exists); err != nil {
			return nil, fmt.Errorf("pgstore: read %s: %w", stream, err)
		}
		if !exists {
			return nil, &es.StreamNotFoundError{Stream: stream}
		}
	}
	return recs, nil
}

// ReadAll implements [es.Store]. It returns the events after the position
// after, in (transaction id, position) order, and only those of
// transactions older than every transaction still running: see the package
// documentation.
func (s *Store) ReadAll(ctx context.Context, after es.Position, limit int) ([]es.Record, error) {
	if limit <= 0 {
		limit = es.BatchSizeDefault
	}
	rows, err := s.pool.Query(ctx, s.q.readAll, after.Commit, clampInt64(after.Prepare), limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read all after %s: %w", after, err)
	}
	recs, err := collectRecords(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read all after %s: %w", after, err)
	}
	s.metrics.read(ctx, true, len(recs))
	return recs, nil
}

// Head implements [es.Store]: the position of the last event a reader can
// see, under the same gate as ReadAll.
func (s *Store) Head(ctx context.Context) (es.Position, error) {
	var p es.Position
	var prepare int64
	err := s.pool.QueryRow(ctx, s.q.head).Scan(&p.Commit, &prepare)
	if errors.Is(err, pgx.ErrNoRows) {
		return es.Start, nil
	}
	if err != nil {
		return es.Start, fmt.Errorf("pgstore: head: %w", err)
	}
	p.Prepare = uint64(prepare)
	return p, nil
}

// readAgain runs read, and runs it again while it fails because its
// connection was lost (a server restart, terminated backends, a network
// cut): a read changes nothing, so running it again on another of the
// pool's connections is safe, and spares the caller an error the pool
// recovers from by itself. When the server restarted, every idle
// connection of the pool is lost and each fails at once, so it tries as
// many times as the pool has connections, and once more on a new one.
//
// ReadStream uses it: an aggregate's load is the first statement of a
// command, and a command in flight should not fail for a connection the
// pool replaces. ReadAll does not: its callers, subscriptions and
// projection workers, already end or retry with backoff on a lost
// connection, and report it.
func readAgain[T any](ctx context.Context, pool *pgxpool.Pool, read func() (T, error)) (T, error) {
	v, err := read()
	for range pool.Stat().MaxConns() {
		if err == nil || ctx.Err() != nil || !pgconnlost.Is(err) {
			break
		}
		v, err = read()
	}
	return v, err
}

func clampInt64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// collectRecords scans rows of recordColumns.
func collectRecords(rows pgx.Rows, sizeHint int) ([]es.Record, error) {
	defer rows.Close()
	recs := make([]es.Record, 0, min(max(sizeHint, 0), 1024))
	var (
		commit                uint64
		prepare               int64
		id                    pgtype.UUID        // a uuid.UUID would be scanned through its sql.Scanner, from text
		stream, typ, metadata pgtype.DriverBytes // valid until the next row
		strs                  = make(interner)
		prevMeta              []byte // the last metadata decoded, as stored
		prevMD                es.Metadata
	)
	for rows.Next() {
		var r es.Record
		if err := rows.Scan(&commit, &prepare, &id, &stream, &r.Version, &typ, &r.Data, &metadata, &r.RecordedAt); err != nil {
			return nil, err
		}
		r.ID = id.Bytes
		r.Stream = strs.string(stream)
		r.Type = strs.string(typ)
		r.Position = es.Position{Commit: commit, Prepare: uint64(prepare)}
		if prevMD != nil && bytes.Equal(metadata, prevMeta) {
			// The events of one append usually carry the same metadata
			// (correlation and causation IDs): copy the map decoded last,
			// sharing its strings. Each record gets a map of its own.
			r.Metadata = maps.Clone(prevMD)
		} else {
			md, err := decodeMetadata(metadata, strs)
			if err != nil {
				return nil, fmt.Errorf("event %s: %w", r.ID, err)
			}
			r.Metadata = md
			prevMeta, prevMD = append(prevMeta[:0], metadata...), md
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return recs, nil
}

// timeOrNil returns nil for the zero time, so SQL can fill in now().
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
