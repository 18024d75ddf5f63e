// Package elasticsink keeps projections' read models in Elasticsearch, with
// their checkpoints, dead letters and leases in PostgreSQL next to every
// other projection's, so that one status shows them all. They are kept by a
// [Keeper], the small interface the sink needs; a *pgsink.Sink is one, and
// this package does not import pgsink.
//
//	pg := pgsink.New(pool, pgsink.Config{})                  // checkpoints, leases, dead letters
//	sink := elasticsink.New(client, pg, elasticsink.Config{}) // the caller owns client and pool
//	if _, err := sink.EnsureIndex(ctx, orderSearch{}); err != nil { ... }
//	w := elasticsink.NewWorker(store, reg, sink, orderSearch{}, projections.Config{})
//	err := w.Run(ctx)
//
// A handler writes documents through the [*Tx] it is given:
// [Tx.Index] (the whole document), [Tx.Update] (merge fields into the
// document) and [Tx.Delete]. The Tx folds the writes of a batch to one
// action per document and sends them with the bulk API, in requests bounded
// by [Config.FlushActions] and [Config.FlushBytes], [Config.Concurrency] at
// a time.
//
// # Batch size
//
// The sink is a [projections.BatchSizer]: a worker whose
// projections.Config.BatchSize is 0 takes batches of FlushActions ×
// Concurrency events (2000 with the defaults), which fill Concurrency
// requests sent at once. A batch's bulk requests are all answered before
// its checkpoint commits, and the next batch's are sent after that commit
// (a handler that reads PostgreSQL through [Tx.Postgres] sees the previous
// batch committed, and a checkpoint never covers a document Elasticsearch
// has not acknowledged). So a smaller batch, of one request or less, sends
// one request at a time and leaves Elasticsearch idle during each commit;
// see docs/benchmarks.md for what that costs.
//
// # Idempotent by construction
//
// Every write carries an external version (version_type=external), so
// Elasticsearch keeps a document only if its version is higher than the one
// stored. A version conflict therefore means "already applied" and counts
// as a success.
//
// The versions come from a counter kept in PostgreSQL with the checkpoint
// (table elasticsink_checkpoints, in pgsink's schema): a batch numbers its
// events on from the counter, in log order, and moves the counter in the
// transaction that moves the checkpoint. So:
//
//   - A batch sent again after a crash between the bulk requests and the
//     commit of its checkpoint starts from the same counter and gives the
//     same events the same versions, however the batches are cut: its
//     writes conflict and count as applied.
//   - Batches apply one at a time under the checkpoint's lock, so a
//     worker that lost its lease and still has a bulk request in flight
//     writes versions no higher than the next holder's for the same events,
//     and lower than any later event's. The lock is pgsink's
//     transaction-level advisory lock, not a row lock, and the record is
//     read without one: the transaction gets no ID while the bulk requests
//     run, so a slow Elasticsearch holds back no reader of the log.
//   - The counter never goes back, not even when the checkpoint is reset
//     to an earlier position: a replay writes over the documents with
//     higher versions and takes effect (a fixed handler's output replaces
//     the old), and once it has caught up the index is what a rebuild would
//     build. Before that, an update (Tx.Update) merges into the document as
//     the first run left it.
//   - A rebuild's generation has a counter of its own, from 1; when it is
//     swapped in, the live checkpoint goes on from the higher of the two.
//   - Events parked as dead letters take no number.
//   - Within a batch, the Tx keeps one action per document, the state and
//     version of the last event that wrote it.
//
// The versions fit Elasticsearch's signed 64 bits on any store and any
// database age. The log position does not: on pgstore its Commit part is
// the cluster's 64-bit transaction ID, epoch included, which production
// clusters take past 2^31 early in their life. [Config.Version] replaces the
// counter with a function of the position that is monotonic in log order,
// such as [PackedVersion] (exact while Commit < 2^31 and Prepare < 2^32,
// an [ErrVersionRange] stall past that). Position-derived versions also keep
// the newer write when a document's events are applied out of log order
// across batches, but they make a replay after a reset a no-op.
//
// Changing [Config.Version] for an index that holds documents is safe only
// if the new mapping gives every later event a version above every version
// stored. Build a new generation instead ([Sink.Rebuild]).
//
// Deletes are versioned too: Elasticsearch remembers a deleted document's
// version for index.gc_deletes (60s by default). Replays in log order are
// correct regardless, since the delete is replayed after the writes it
// follows; only writers running out of order for longer than that could
// bring a deleted document back. Raise index.gc_deletes in [Index.Settings]
// if that matters.
//
// # Index identity
//
// The elasticsink_checkpoints row also records the concrete index (name and
// Elasticsearch's index UUID) behind each alias the checkpoint's documents
// were written to, and live batches write to that concrete index. A worker
// made with [NewWorker] compares it with what the alias resolves to when it
// starts and before every batch. An alias that is gone, or that points at
// another index (a new or restored Elasticsearch cluster, an index created
// again by hand or by [Sink.EnsureIndex]), means the documents of the
// events before the checkpoint are missing: going on would leave them out
// of search for good. The worker then stalls with an [*IndexLostError] as
// the status's last error, which says what happened and to run
// `projections rebuild <name>`; a rebuild that swaps in resumes the
// projection. With [Config.OnIndexLost] set to [RebuildIndex] it resets its
// checkpoint to the start of the log and fills a new generation by itself.
// A projection whose checkpoint is at the start of the log fills whatever
// index is behind its alias, and creates one when there is none; so does
// one whose checkpoint has moved only past batches that wrote no document
// (events it does not handle, dead letters), whose record names no index.
// The first such batch writes the record before it moves the checkpoint
// off the start. An index emptied in place (its documents deleted, the
// index kept) is not noticed.
//
// A checkpoint with no record, written by an earlier version of this
// package or left by a deleted record, stalls the same way: rebuild the
// index once after upgrading.
//
// # Timeouts
//
// Every request the sink makes has a deadline: [Config.BulkTimeout] (30s)
// for bulk requests and changes to indices and aliases,
// [Config.RequestTimeout] (10s) for reads. A node
// that stops answering without refusing connections fails the batch with a
// transient [ErrTimeout]; the worker retries it from the checkpoint with
// backoff, and records the error meanwhile ([projections.RetryRecorder]),
// so that status shows the projection as retrying, with the error, until a
// batch commits again.
//
// # Per-item results and the error policy
//
// Every item of every bulk response is checked. Items refused for a
// retryable reason (429, 5xx, a shard not available) are sent again with
// exponential backoff, up to [Config.MaxRetries] times, after which the
// batch fails with a transient error and the worker retries it from the
// checkpoint. An item refused for any other reason (a document that does not
// fit the mapping, say) fails the batch with an [*ItemError]: the worker
// applies the batch's events one at a time to find the event at fault, and
// the projection's error policy stops the projection at it (stream,
// position, type and Elasticsearch's reason in the status) or parks it in
// pgsink's dead-letter table. The bulk requests are sent inside
// [projections.Sink.Apply]'s PostgreSQL transaction, which moves the
// checkpoint only once every item is handled. Use [NewWorker], which flushes
// the documents at the end of each HandleBatch so that per-document
// failures reach the error policy.
//
// # Index lifecycle
//
// A [Projection] declares its index: the alias readers search, the
// mappings and the settings. [Sink.EnsureIndex] creates the first
// generation, an index named alias-g1, behind the alias. [Sink.Rebuild]
// builds a new generation (alias-g<unix ms>) from the start of the log
// while the alias keeps serving the old one, catches up, moves the alias in
// one atomic request, moves the live checkpoint to where the new generation
// is and deletes the old index. It is resumable and reports progress like
// pgsink's rebuild ([projections.RebuildProgress]). [Sink.Verify] builds a shadow
// index (alias-verify-<unix ms>, behind no alias) up to the live checkpoint,
// compares its documents by _id and _source with the live ones as of that
// checkpoint, reports the [Drift] and deletes the shadow.
//
// # Reading
//
// [Search] decodes hits into a Go type; [Sink.Client] returns the raw
// client for everything else. Documents become searchable at the next
// refresh (1s by default), after the checkpoint has moved: for
// read-your-writes through search, set [Config.Refresh] to "wait_for", or
// read documents by ID, which is real time.
//
// This package is in a module of its own,
// github.com/stratadev/strata/projections/elasticsink, so that applications
// that do not use it do not get go-elasticsearch in their module graph.
package elasticsink
