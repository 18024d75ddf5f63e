package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ListStreamsLimitDefault is the number of streams [Store.ListStreams]
// returns when [ListStreamsOptions.Limit] is 0.
const ListStreamsLimitDefault = 100

// ListStreamsOptions select and page the streams [Store.ListStreams]
// returns. The zero value lists the first [ListStreamsLimitDefault] streams.
type ListStreamsOptions struct {
	// Prefix keeps the streams whose ID starts with it, compared byte for
	// byte: no character, '%' and '_' included, is special. Defaults to ""
	// (every stream).
	Prefix string
	// After lists the streams whose ID sorts after it: pass the ID of the
	// last stream of the previous page. Defaults to "" (from the first).
	After string
	// Limit is the most streams to return. Defaults to
	// [ListStreamsLimitDefault].
	Limit int
}

// StreamInfo describes a stream and its last event.
type StreamInfo struct {
	ID             string
	Version        int64     // The stream's version: its last event's.
	LastType       string    // The type of its last event.
	LastRecordedAt time.Time // When its last event was recorded.
}

// ListStreams returns the streams of the store in the order of their IDs
// (in the collation of the events table's stream_id column, the database's
// default unless changed), at most opts.Limit of them. A page shorter than
// the limit is the last.
//
// The store has no table of streams: ListStreams walks the distinct stream
// IDs of the events' primary-key index (stream_id, stream_version), one
// index probe per stream, plus one for each stream's last event. Its cost
// grows with the number of streams it passes, not with the number of
// events: a page costs about 2 × Limit probes. With a prefix, the walk
// starts at the prefix and passes, without returning them, the streams
// after it that do not match, up to the end of the index or until the page
// is full: the matches are not always next to each other in a
// language-aware collation (en_US ignores '-' at first, so "orderb" sorts
// between "order-a" and "order-c"), so the walk cannot stop at the first
// stream that does not match.
func (s *Store) ListStreams(ctx context.Context, opts ListStreamsOptions) ([]StreamInfo, error) {
	if opts.Limit < 0 {
		return nil, fmt.Errorf("pgstore: list streams: ListStreamsOptions.Limit is %d; want a positive number or 0 for the default", opts.Limit)
	}
	limit := opts.Limit
	if limit == 0 {
		limit = ListStreamsLimitDefault
	}
	rows, err := s.pool.Query(ctx, s.expand(listStreamsSQL), opts.After, opts.Prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list streams: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StreamInfo, error) {
		var si StreamInfo
		err := row.Scan(&si.ID, &si.Version, &si.LastType, &si.LastRecordedAt)
		return si, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: list streams: %w", err)
	}
	return list, nil
}

// listStreamsSQL walks the distinct stream IDs with a recursive "loose
// index scan": each step finds the next stream ID after the previous one
// with one probe of events_pkey. The walk starts after $1 (After) and at $2
// (Prefix); it stops at the end of the index or once $3 (Limit) streams
// matched. Every prefix match sorts at or after the prefix itself, so
// starting there skips nothing.
const listStreamsSQL = `WITH RECURSIVE s (stream_id, matched) AS (
    SELECT f.stream_id, starts_with(f.stream_id, $2)::int
    FROM (SELECT e.stream_id FROM {{schema}}.events e
          WHERE e.stream_id > $1 AND e.stream_id >= $2
          ORDER BY e.stream_id LIMIT 1) f
  UNION ALL
    SELECT n.stream_id, s.matched + starts_with(n.stream_id, $2)::int
    FROM s CROSS JOIN LATERAL (
        SELECT e.stream_id FROM {{schema}}.events e
        WHERE e.stream_id > s.stream_id
        ORDER BY e.stream_id LIMIT 1) n
    WHERE s.matched < $3
)
SELECT s.stream_id, l.stream_version, l.type, l.recorded_at
FROM s CROSS JOIN LATERAL (
    SELECT e.stream_version, e.type, e.recorded_at FROM {{schema}}.events e
    WHERE e.stream_id = s.stream_id
    ORDER BY e.stream_version DESC LIMIT 1) l
WHERE starts_with(s.stream_id, $2)
ORDER BY s.stream_id
LIMIT $3`
