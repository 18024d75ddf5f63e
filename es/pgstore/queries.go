package pgstore

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
	streamVersion string
	readForwards  string
	readBackwards string
	readAll       string
	head          string
	pending       string
	hold          string
	loadSnapshot  string
	saveSnapshot  string
	importStreams string
	existing      string
	notify        string
}

// recordColumns are the columns scanned by scanRecord, in its order.
const recordColumns = `tx_id, position, event_id, stream_id, stream_version, type, data, metadata, recorded_at`

func newQueries(expand func(string) string) queries {
	return queries{
		append: expand(`SELECT o_status, o_version, o_tx_id, o_position, o_duplicate_id
			FROM {{schema}}.append($1, $2, $3, $4, $5, $6, $7, $8)`),

		streamVersion: expand(`SELECT version FROM {{schema}}.streams WHERE stream_id = $1`),

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
		// since the read.
		pending: expand(`SELECT EXISTS (
			SELECT FROM {{schema}}.events WHERE (tx_id, position) > ($1, $2))`),

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

		importStreams: expand(`INSERT INTO {{schema}}.streams (stream_id, version, tx_id)
			SELECT s, v, pg_current_xact_id() FROM unnest($1::text[], $2::bigint[]) AS u(s, v)`),

		existing: expand(`SELECT stream_id, version FROM {{schema}}.streams
			WHERE stream_id = ANY($1) ORDER BY stream_id LIMIT 1`),

		notify: expand(`SELECT pg_notify({{channel}}, '')`),
	}
}
