package pgstore

import "strings"

// visibleXmin is the gate of every read of the global log: the oldest
// transaction still running when the statement's snapshot was taken. Rows of
// transactions below it are final, and no transaction that is still running
// or not yet started can add a row that sorts before them.
const visibleXmin = `pg_snapshot_xmin(pg_current_snapshot())`

// queries holds the store's SQL with the schema filled in. Every statement
// names its schema, so the store works with any search_path, an empty one
// included.
type queries struct {
	append        string
	lockStreams   string
	groupAppend   string
	groupNotify   string
	appendOne     string
	appendMany    string
	streamExists  string
	readForwards  string
	readBackwards string
	readAll       string
	head          string
	pending       string
	appendsIdle   string
	listening     string
	unlistening   string
	hold          string
	loadSnapshot  string
	saveSnapshot  string
	existing      string
	notify        string
}

// appendFastFrom is the FROM clause of the fast appends: $1 is the stream,
// $2 and $3 the lowest and highest version the expected version allows,
// $8 the stream's lock key and $9 its slot (see appendArgs). It takes the
// stream's lock, then cur is the stream's last event (version v, tx_id), or
// NULLs for a new stream.
const appendFastFrom = `FROM (SELECT pg_advisory_xact_lock({{streamlock}}, $8::int)) lock
			LEFT JOIN LATERAL (
				SELECT e.stream_version AS v, e.tx_id FROM {{schema}}.events e
				WHERE e.stream_id = $1 ORDER BY e.stream_version DESC LIMIT 1
			) cur ON true
			WHERE coalesce(cur.v, 0) BETWEEN $2::bigint AND $3::bigint`

// notifyOnce notifies unless no subscriber listens (the append gets its
// stream's lock among (notifyLock, 18…33), which every listening subscriber
// holds in shared mode) or another append in flight holds the right to
// notify, (notifyLock, 1). In between it marks the append as in flight by
// taking its stream's lock among (notifyLock, 2…17) in shared mode; the
// condition of that branch is never true. See notify.go.
const notifyOnce = `CASE
				WHEN pg_try_advisory_xact_lock({{notifylock}}, 18 + $9::int) THEN NULL
				WHEN pg_advisory_xact_lock_shared({{notifylock}}, 2 + $9::int)::text IS NULL THEN NULL
				WHEN pg_try_advisory_xact_lock({{notifylock}}, 1) THEN pg_notify({{channel}}, '')::text
			END`

// recordColumns are the columns scanned by scanRecord, in its order.
const recordColumns = `tx_id, position, event_id, stream_id, stream_version, type, data, metadata, recorded_at`

func newQueries(expand func(string) string) queries {
	return queries{
		append: expand(`SELECT o_status, o_version, o_tx_id, o_position, o_duplicate_id
			FROM {{schema}}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`),

		// The locks of a group's streams, in the order of their keys ($1
		// is sorted): the sorted subquery feeds the calls in its order.
		lockStreams: expand(`SELECT count(pg_advisory_xact_lock({{streamlock}}, k.k)::text)
			FROM (SELECT k FROM unnest($1::int[]) AS u(k) ORDER BY k) k`),

		// An append in a group, whose stream is locked already (so the
		// statement's snapshot sees the stream's last event, an earlier
		// append of the group included), for events with IDs of the
		// store's own (which cannot be stored yet): $1 the stream, $2 and
		// $3 the lowest and highest version the expected version allows,
		// $4 to $7 the events. It returns the stream's version before the
		// append, and the last event's tx_id, position and version, NULL
		// when the expected version did not hold and nothing was
		// inserted. It does not notify: groupNotify does, once per group.
		groupAppend: expand(`WITH cur AS (
				SELECT coalesce(l.v, 0) AS v, l.tx_id
				FROM (SELECT) one LEFT JOIN LATERAL (
					SELECT e.stream_version AS v, e.tx_id FROM {{schema}}.events e
					WHERE e.stream_id = $1 ORDER BY e.stream_version DESC LIMIT 1
				) l ON true
			), ins AS (
				INSERT INTO {{schema}}.events (tx_id, event_id, stream_id, stream_version, type, data, metadata)
				SELECT greatest(cur.tx_id, pg_current_xact_id()), u.id, $1, cur.v + u.ord, u.type, u.data, u.meta
				FROM cur, unnest($4::uuid[], $5::text[], $6::json[], $7::json[]) WITH ORDINALITY AS u(id, type, data, meta, ord)
				WHERE cur.v BETWEEN $2::bigint AND $3::bigint
				ORDER BY u.ord
				RETURNING tx_id, position, stream_version
			)
			SELECT cur.v, last.tx_id, last.position, last.stream_version
			FROM cur LEFT JOIN (SELECT * FROM ins ORDER BY position DESC LIMIT 1) last ON true`),

		// The notification of a group, as notifyOnce for one append, $1
		// being the slot of one of its streams: any slot marks the group
		// as in flight, and every listener holds all of them.
		groupNotify: expand(`SELECT ` + strings.ReplaceAll(notifyOnce, "$9", "$1")),

		// The fast appends: lock the stream, read its version from the
		// statement's snapshot, insert if the expected version holds. The
		// snapshot was taken before the lock, so after waiting for another
		// writer it is stale; then the insert hits a version that exists and
		// fails with a unique violation, and the append function, whose
		// statements see the other writer's events, decides. The lock keeps
		// the function from writing between this read and this insert.
		appendOne: expand(`INSERT INTO {{schema}}.events (tx_id, event_id, stream_id, stream_version, type, data, metadata)
			SELECT greatest(cur.tx_id, pg_current_xact_id()), $4, $1, coalesce(cur.v, 0) + 1, $5, $6, $7
			` + appendFastFrom + `
			RETURNING tx_id, position, stream_version, ` + notifyOnce),

		appendMany: expand(`WITH ins AS (
				INSERT INTO {{schema}}.events (tx_id, event_id, stream_id, stream_version, type, data, metadata)
				SELECT greatest(cur.tx_id, pg_current_xact_id()), u.id, $1, coalesce(cur.v, 0) + u.ord, u.type, u.data, u.meta
				FROM (` + `SELECT cur.* ` + appendFastFrom + `) cur,
					unnest($4::uuid[], $5::text[], $6::json[], $7::json[]) WITH ORDINALITY AS u(id, type, data, meta, ord)
				ORDER BY u.ord
				RETURNING tx_id, position, stream_version
			)
			SELECT tx_id, position, stream_version, ` + notifyOnce + `
			FROM ins ORDER BY position DESC LIMIT 1`),

		streamExists: expand(`SELECT EXISTS (SELECT FROM {{schema}}.events WHERE stream_id = $1)`),

		readForwards: expand(`SELECT ` + recordColumns + `
			FROM {{schema}}.events
			WHERE stream_id = $1 AND stream_version >= $2
			ORDER BY stream_version
			LIMIT $3`),

		readBackwards: expand(`SELECT ` + recordColumns + `
			FROM {{schema}}.events
			WHERE stream_id = $1 AND stream_version <= $2
			ORDER BY stream_version DESC
			LIMIT $3`),

		// The key query of the store: a range scan of events_log_key that
		// stops at the visibility gate.
		readAll: expand(`SELECT ` + recordColumns + `
			FROM {{schema}}.events
			WHERE (tx_id, position) > ($1, $2)
			  AND tx_id < ` + visibleXmin + `
			ORDER BY tx_id, position
			LIMIT $3`),

		head: expand(`SELECT tx_id, position
			FROM {{schema}}.events
			WHERE tx_id < ` + visibleXmin + `
			ORDER BY tx_id DESC, position DESC
			LIMIT 1`),

		// Whether committed rows exist after a position, visible or not. A
		// subscription asks after a read that did not fill its batch: the
		// rows are held back by a running transaction, or were committed
		// since the read. Not EXISTS: after five runs PostgreSQL plans a
		// prepared statement generically, and the generic plan of an EXISTS
		// on a row comparison scans the whole log, expecting a third of it
		// to match; the ORDER BY … LIMIT 1 keeps it on the index.
		pending: expand(`SELECT (SELECT tx_id FROM {{schema}}.events
			WHERE (tx_id, position) > ($1, $2)
			ORDER BY tx_id, position LIMIT 1) IS NOT NULL`),

		// Whether no append is in flight: nobody holds any of the locks
		// (notifyLock, 2…17). Taking them exclusively for the rest of the
		// batch this runs in makes new appends wait for a moment.
		appendsIdle: expand(`SELECT bool_and(pg_try_advisory_xact_lock({{notifylock}}, k))
			FROM generate_series(2, 17) AS k`),

		// Tell appends that a subscriber listens: session locks, held by
		// the listening connection until the store's last subscription
		// stops (unlistening) or the connection closes.
		listening: expand(`SELECT pg_advisory_lock_shared({{notifylock}}, k)
			FROM generate_series(18, 33) AS k`),
		unlistening: expand(`SELECT pg_advisory_unlock_shared({{notifylock}}, k)
			FROM generate_series(18, 33) AS k`),

		// The first held-back event and the transaction holding it: the
		// oldest running one, from pg_stat_activity, or a prepared
		// transaction.
		hold: expand(`WITH gate AS (
				SELECT ` + visibleXmin + ` AS xmin
			), first AS (
				SELECT e.tx_id, e.position
				FROM {{schema}}.events e, gate
				WHERE e.tx_id >= gate.xmin
				ORDER BY e.tx_id, e.position
				LIMIT 1
			)
			SELECT first.tx_id, first.position, gate.xmin,
				a.pid, a.state, a.application_name,
				coalesce(a.xact_start, p.prepared), p.gid,
				(extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, p.prepared)) * 1e6)::bigint
			FROM first CROSS JOIN gate
			LEFT JOIN pg_catalog.pg_stat_activity a ON a.backend_xid = gate.xmin::xid
			LEFT JOIN pg_catalog.pg_prepared_xacts p ON p.transaction = gate.xmin::xid
			LIMIT 1`),

		loadSnapshot: expand(`SELECT version, revision, data, taken_at
			FROM {{schema}}.snapshots WHERE stream_id = $1`),

		saveSnapshot: expand(`INSERT INTO {{schema}}.snapshots AS s (stream_id, version, revision, data, taken_at)
			VALUES ($1, $2, $3, $4, coalesce($5, now()))
			ON CONFLICT (stream_id) DO UPDATE
			SET version = excluded.version, revision = excluded.revision,
			    data = excluded.data, taken_at = excluded.taken_at
			WHERE s.version <= excluded.version`),

		// One of the given streams that has events, and its version.
		existing: expand(`SELECT s.id, last.stream_version
			FROM unnest($1::text[]) AS s(id)
			CROSS JOIN LATERAL (
				SELECT e.stream_version FROM {{schema}}.events e
				WHERE e.stream_id = s.id ORDER BY e.stream_version DESC LIMIT 1
			) last
			LIMIT 1`),

		notify: expand(`SELECT pg_notify({{channel}}, '')`),
	}
}
