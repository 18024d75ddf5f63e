// Package pgstore is an event store on PostgreSQL (13 or later), on pgx v5.
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	...
//	store := pgstore.New(pool, pgstore.Config{}) // the caller owns and closes pool
//	if _, err := store.Migrate(ctx); err != nil { ... }
//	res, err := store.Append(ctx, "order-42", es.NoStream, es.EventData{Type: "OrderPlaced", Data: data})
//
// [*Store] implements [es.Store] and [es.SnapshotStore], and adds
// [Store.AppendTx] (append inside the caller's transaction),
// [Store.Import] (bulk load with COPY), [Store.HeldBack] (what is holding
// readers back), [Store.Backlog] (how many committed events wait behind it),
// [Store.CountEvents] (an exact, indexed count of the events between two
// positions, for lag and rebuild progress) and [Store.ListStreams] (the
// streams by ID, with a prefix and paging).
//
// # Schema
//
// [Store.Migrate] creates the tables in the schema named by [Config.Schema]
// ("strata" by default), records the migrations it applied in
// schema_migrations, and returns a [MigrateResult]: which migrations it
// applied now and the schema's version. [Store.MigrateTx] does the same in
// the caller's transaction (holding the migration lock until it ends), and
// [Store.SchemaVersion] reads the version. Teams that manage their schema
// with golang-migrate, goose or atlas take the SQL from [MigrationSQL]
// (`strata migrate --print` prints it): each script records its version in
// schema_migrations, so a later Migrate does not apply it again.
//
// The tables:
//
//   - events(position, tx_id, event_id, stream_id, stream_version, type,
//     data, metadata, recorded_at): the log. Unique on (stream_id,
//     stream_version), on event_id, and on (tx_id, position), the index the
//     global log is read from. A stream is the set of its events; its
//     version is its highest stream_version.
//   - snapshots(stream_id, version, revision, data, taken_at).
//
// Every statement names the schema; the store never depends on search_path.
// Event data and metadata are stored as json: the text as it was appended,
// byte for byte, and read back the same. They can be queried in SQL
// (data->>'customer') and indexed on an expression over a cast to jsonb
// (CREATE INDEX ... ((data::jsonb)->'customer')). The store does not use
// jsonb for them because jsonb has to be parsed on every write and printed
// as text on every read: that printing was most of the server's work on a
// read of the log (docs/benchmarks.md, "Where the read time goes"); a json
// value is sent as it is. Migration 002_json converts a store created with
// jsonb columns (see [Store.Migrate]); values stored before it keep the
// normalized text jsonb gave them.
// Appends refuse what a cast to jsonb could not take, the escape \u0000
// and unpaired surrogate escapes, and NUL bytes in names, with an
// [*es.InvalidEventError]. A number beyond PostgreSQL's numeric range
// (1e1000000) is kept as written; a query that casts it to jsonb fails.
//
// # Reading the global log without skipping events
//
// An event's position comes from an identity column when it is inserted,
// but transactions commit in any order: a transaction may insert position 10
// and commit after another has inserted and committed position 11. A reader
// that pages with "position > last seen" can read 11, move on, and never see
// 10.
//
// So each row also records its transaction's ID (tx_id, an xid8), and the
// log's order is (tx_id, position): [es.Position] is {Commit: tx_id, Prepare:
// position}. A read only returns rows whose tx_id is below
// pg_snapshot_xmin(pg_current_snapshot()), the oldest transaction still
// running when the read began:
//
//	SELECT … FROM events
//	WHERE (tx_id, position) > ($1, $2)
//	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
//	ORDER BY tx_id, position LIMIT $3
//
// Every transaction below that xmin has ended, and every transaction still
// running or yet to start has a higher ID, so nothing can ever appear before
// what a read returned. The query is a range scan of the (tx_id, position)
// index.
//
// The price: a transaction that stays open holds readers back. Any
// transaction that has written anything, in any database of the server,
// hides the events committed after it began writing from [Store.ReadAll],
// [Store.Subscribe] and [Store.Head] until it commits or rolls back. Keep
// transactions short, above all those that use [Store.AppendTx];
// [Store.HeldBack] names the transaction, its process and how long it has
// been open, and [Store.Backlog] counts the committed events it hides, which
// projection status adds to the lag. Reads of one stream ([Store.ReadStream]) are not held back:
// stream versions are assigned under the stream's lock, so they cannot
// commit out of order.
//
// Within a stream the log keeps version order: an event's tx_id is the
// greater of its transaction's ID and the tx_id of the stream's previous
// event. (A transaction that wrote before it appended, with [Store.AppendTx],
// can have a lower ID than the one that appended the previous version.) This
// keeps the gate safe, since a row's tx_id is never below its writer's ID.
//
// # Appends and idempotency
//
// An append takes a transaction-level advisory lock on its stream, checks
// the expected version against the stream's last event, inserts the events
// and, when needed, sends a notification on the store's channel (see
// [Store.Channel]) that wakes subscribers when the transaction commits.
// Usually that is one statement and one round trip; when the statement
// cannot decide (a version conflict, an event ID already stored, a writer
// that got the lock first), a PL/pgSQL function installed by the migration
// decides in a second one. Concurrent appends to one stream get exactly one
// winner per version; the others get an [*es.VersionConflictError].
//
// The store's advisory locks use the two-key form, pg_advisory_xact_lock(int,
// int), with first keys derived from the schema name: one for the streams
// (second key a 32-bit FNV-1a hash of the stream ID) and one for
// notifications (second keys 1 to 33). Locks an application takes with the one-key form never collide
// with them.
//
// Events without an ID get a version 7 UUID. When an append carries IDs that
// are already stored:
//
//   - if all of them are stored in that stream, consecutively and in the same
//     order, and (for [es.NoStream] and [es.Exact]) exactly at the versions
//     that follow the expected version, the append is a retry of one that
//     succeeded: it returns the original [es.AppendResult] (the version and
//     position of the last of them) and writes nothing;
//   - otherwise (some stored elsewhere, in another order, or only some of
//     them) it returns an [*es.DuplicateEventIDError].
//
// # Group commit
//
// Concurrent calls of [Store.Append] on one store share round trips and
// commits, so that a commit, and with durable settings its WAL flush, is
// paid once per group rather than once per append. An append that finds no
// other in flight is sent at once, alone, as described above: a single
// client never waits. Appends that arrive while one is in flight queue up
// and are sent together when it is done, up to [Config.GroupCommitMax] (32)
// of them and [Config.MaxAppendSize] bytes: one pipeline of statements,
// one transaction. There is no timer; the batching window is the time the
// previous commit took. Each append of a group gets its own result: a
// version conflict, a duplicate event ID or an idempotent retry in one does
// not affect the others, and appends to one stream in one group run in
// queue order, each seeing the versions of those before it, exactly as one
// after the other. The group takes its streams' locks in the order of their
// keys, so groups never deadlock with each other or with single appends.
// If the server refuses a statement of the group for any other reason (a
// deadlock with a caller's transaction, a concurrent [Store.Import]),
// nothing of the group is stored and each append is sent again alone.
// When the connection breaks after a group was sent, every append of the
// group returns an [*es.UnknownOutcomeError], as each would alone.
//
// An append whose context ends while it waits in the queue leaves it and
// returns the context's error: nothing was written. Once its group has been
// taken from the queue, its outcome is the group's: it returns an
// [*es.UnknownOutcomeError] at once, and the group goes on, unless every
// append of the group has stopped waiting, which cancels it. Set
// GroupCommitMax to 1 to send every append alone. [Store.AppendTx] runs in
// the caller's transaction and is never grouped.
//
// Each statement of [Store.Append] sent alone commits on its own, and a
// group's statements commit together. When the connection
// breaks after one was sent and before its answer came back (the server
// process was terminated during the commit, the network failed, the
// context ended and pgx closed the connection), the append returns an
// [*es.UnknownOutcomeError], which unwraps to [es.ErrUnknownOutcome] and to
// pgx's error: the events may be stored. pgx's own label is no guide here:
// pgconn.SafeToRetry can be true for a statement that was sent. Appending
// the same events with the same IDs at the same expected version settles
// it, by the rule above. An error the server reports for the statement
// (severity ERROR: a conflict, bad input, a cancelled statement) means that
// nothing was stored. Error texts describe a broken connection in plain
// words ("terminating connection due to administrator command (SQLSTATE
// 57P01)", "the connection was closed") rather than through pgx's wrapping.
//
// # Subscriptions
//
// [Store.Subscribe] catches up with ReadAll pages, then waits for the
// store's notifications, looking again every [Config.PollInterval] in case
// one is missed, and every few milliseconds while appends are in flight or
// committed events are held back by a running transaction (which may roll
// back without notifying anybody).
//
// All subscriptions, of every store on one pool, and the checkpoint watchers
// of projections/pgsink on that pool share one listening connection: it is
// opened with the pool's connection settings, outside the pool (so it is one
// server connection beyond the pool's limit), with application_name
// "<the pool's application_name> listener" ("strata listener" when the pool
// sets none), when the first of them starts listening, and closed when the
// last stops. A process therefore uses one extra connection per pool,
// however many subscriptions and projections it runs. When that connection
// breaks, it is opened again with backoff, and every subscription reads
// again once it listens, because notifications sent meanwhile are lost.
//
// PostgreSQL serializes the commits of all transactions that send a
// notification, and a notification costs about as much as the rest of a
// small append. So an append made with [Store.Append] notifies only when a
// subscriber listens and no other append in flight is going to: at most one
// notifying append commits at a time, and concurrent appends scale. A
// subscriber makes up for the appends that did not notify by looking again
// while any append is in flight. [Store.AppendTx] and [Store.Import] always
// notify.
//
// # Positions and counts
//
// A record's [es.Position] is (tx_id, position): Commit is the transaction
// ID the log is ordered by, Prepare the identity value the row got at
// insert. Prepare values are unique and grow, but they are not a count:
// concurrent transactions interleave them (a transaction with the lower
// tx_id may hold both lower and higher values than one after it in the
// log), and a rolled-back insert leaves a gap. How many events lie between
// two positions is what [Store.CountEvents] answers, exactly.
//
// # Sizes
//
// An append is refused with an [*es.InvalidEventError], before anything is
// sent, when one of its events is larger than [Config.MaxEventSize] (8 MiB
// by default) or all of them together are larger than
// [Config.MaxAppendSize] (64 MiB), as [es.EventSize] measures them;
// [Store.Import] checks the event size.
//
// # Metrics
//
// Through [Config.MeterProvider] the store counts appends by outcome
// ([AttrOutcome]: appended, idempotent, conflict and so on), records the
// events per append and the time each took, counts read and subscription
// pages, and the time subscriptions waited behind appends in flight or an
// open transaction (docs/observability.md lists every metric).
package pgstore
