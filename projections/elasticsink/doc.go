// Package elasticsink keeps projections' read models in Elasticsearch, with
// their checkpoints, dead letters and leases in PostgreSQL next to every
// other projection's (through projections/pgsink), so that one status shows
// them all.
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
// by [Config.FlushActions] and [Config.FlushBytes].
//
// # Idempotent by construction
//
// Every write carries an external version (version_type=external) derived
// from the log position of the event that caused it, so Elasticsearch keeps
// a document only if its version is higher than the one stored. A batch
// delivered twice, a replay from an older checkpoint, or writes that arrive
// out of order (a worker that lost its lease and has not noticed yet, the
// live worker and a rebuild writing the same index) cannot put older state
// over newer. A version conflict therefore means "already applied" and
// counts as a success.
//
// The version must grow with log order, which is (Commit, Prepare)
// compared in that order (see [es.Position]); one document may be fed by
// several streams (a product rename updating order documents), so the
// stream version will not do, and for pgstore neither will Prepare alone
// (sequence values are taken before transactions commit, out of order).
// [PackedVersion], the default, packs the pair into the 63 bits
// Elasticsearch allows: Commit in the high 31 bits and Prepare in the low
// 32, which is exact and monotonic while Commit < 2^31 and Prepare < 2^32
// (for pgstore: the first 2.1 billion transaction IDs of the cluster and 4.3
// billion events; for memstore: 2.1 billion events). Past those limits
// PackedVersion fails with [ErrVersionRange] and the event follows the
// error policy: a stall with a clear reason, never a wrong version. Stores
// with other positions set [Config.Version]; any function that is
// monotonic in log order and deterministic per position is correct. A
// per-projection counter kept with the checkpoint was rejected: the number
// an event gets would depend on how batches were cut and which event types
// the deployed code handles, so a replay after a deployment could give an
// event a lower number than a write already stored and have a newer event
// ignored.
//
// # The range of PackedVersion on pgstore
//
// pgstore's Commit is the PostgreSQL transaction ID (xid8) of the append,
// and every transaction that writes anywhere in the cluster takes one:
// other applications' and every projection's checkpoint commits included.
// 2^31 of them is about 25 days at 1,000 writing transactions a second, 250
// days at 100. Past that, every Elasticsearch projection stalls at its next
// event with [ErrVersionRange].
//
// Subtracting a base commit recorded with each index generation does not
// lift this much. A rebuild replays from the start of the log, so a
// generation's base can be no later than the commit of the log's first
// event; and all generations behind an alias need the same mapping, since
// a live batch in flight while a rebuild swaps the alias writes versions
// computed before the swap into the new generation. Such a base counts
// transactions since the log's first event rather than since the cluster
// was created, which gains nothing for a store created with its cluster. A
// real gain needs fewer bits for Prepare, which only orders events that
// share a Commit, and a position does not say where the Prepare values of
// its Commit start.
//
// Changing [Config.Version] for an index that holds documents is safe only
// if the new mapping gives every later event a version above every version
// stored: one that agrees with the old mapping up to a fixed position and
// uses only higher values after it. Any other change makes some newer write
// lose against an older stored version and be dropped as a conflict,
// silently. Build a new generation with the new mapping instead
// ([Sink.Rebuild]); until it swaps, the old one may miss writes.
//
// Deletes are versioned too: Elasticsearch remembers a deleted document's
// version for index.gc_deletes (60s by default). Replays in log order are
// correct regardless, since the delete is replayed after the writes it
// follows; only writers running out of order for longer than that could
// bring a deleted document back. Raise index.gc_deletes in [Index.Settings]
// if that matters.
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
// pgsink's rebuild ([pgsink.RebuildProgress]). [Sink.Verify] builds a shadow
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
package elasticsink
