package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/stratadev/strata/es"
)

// countEventsSQL counts the rows between two positions of the log: a range
// scan of events_log_key, an index-only scan once the table is vacuumed.
const countEventsSQL = `SELECT count(*) FROM {{schema}}.events
	WHERE (tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4)`

// backlogSQL reads, from one snapshot, the readable head (the last row
// below the gate), the committed rows at or above the gate, which readers
// cannot see yet, and the last committed row. Rows of transactions still
// running are invisible to the statement, so only committed rows count.
const backlogSQL = `WITH gate AS (SELECT ` + visibleXmin + ` AS xmin)
	SELECT h.tx_id, h.position, b.n, b.since, l.tx_id, l.position
	FROM gate
	CROSS JOIN LATERAL (
		SELECT count(*) AS n, min(e.recorded_at) AS since
		FROM {{schema}}.events e WHERE e.tx_id >= gate.xmin
	) b
	LEFT JOIN LATERAL (
		SELECT e.tx_id, e.position FROM {{schema}}.events e
		WHERE e.tx_id < gate.xmin
		ORDER BY e.tx_id DESC, e.position DESC LIMIT 1
	) h ON true
	LEFT JOIN LATERAL (
		SELECT e.tx_id, e.position FROM {{schema}}.events e
		ORDER BY e.tx_id DESC, e.position DESC LIMIT 1
	) l ON true`

var (
	_ es.Counter         = (*Store)(nil)
	_ es.BacklogReporter = (*Store)(nil)
)

// CountEvents implements [es.Counter] with one indexed count of the rows
// between the two positions. It is exact: positions order the log by
// (transaction id, sequence), and the count takes the same order, whereas
// the difference of two positions' Prepare parts (the sequence) is not a
// count, since transactions interleave their sequence numbers and a rolled
// back insert leaves a gap. Up to the head it counts what ReadAll returns;
// beyond it, the committed events that readers cannot see yet.
func (s *Store) CountEvents(ctx context.Context, after, upTo es.Position) (int64, error) {
	if !after.Before(upTo) {
		return 0, nil
	}
	var n int64
	err := s.pool.QueryRow(ctx, s.expand(countEventsSQL),
		after.Commit, clampInt64(after.Prepare), upTo.Commit, clampInt64(upTo.Prepare)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgstore: count events after %s up to %s: %w", after, upTo, err)
	}
	return n, nil
}

// Backlog implements [es.BacklogReporter]: the readable head, and the
// events that transactions have committed beyond it while an older
// transaction is still running (see [Store.HeldBack] for which one).
func (s *Store) Backlog(ctx context.Context) (es.Backlog, error) {
	var (
		b                es.Backlog
		headTx, lastTx   *uint64
		headPos, lastPos *int64
		since            *time.Time
	)
	err := s.pool.QueryRow(ctx, s.expand(backlogSQL)).Scan(&headTx, &headPos, &b.Events, &since, &lastTx, &lastPos)
	if err != nil {
		return es.Backlog{}, fmt.Errorf("pgstore: backlog: %w", err)
	}
	if headTx != nil {
		b.Head = es.Position{Commit: *headTx, Prepare: uint64(*headPos)}
	}
	if lastTx != nil {
		b.Last = es.Position{Commit: *lastTx, Prepare: uint64(*lastPos)}
	}
	if since != nil && b.Events > 0 {
		b.Since = *since
	}
	return b, nil
}
