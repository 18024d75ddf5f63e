// Package es is the core of strata's event store: the event envelope, the
// [Store] interface every backend implements, typed errors, the event type
// [Registry] with its JSON codec and upcasters, and the generic [Repository]
// that loads aggregates by replay and saves them with optimistic concurrency.
//
// "es" means event store throughout strata; Elasticsearch is "elastic".
//
// The package imports no database driver. Backends live in sub-packages and
// are handed to the code that needs them:
//
//	store := pgstore.New(pool, pgstore.Config{}) // the caller owns and closes pool
//	orders := es.NewRepository(store, registry, order.New, es.RepositoryConfig{StreamPrefix: "order-"})
//
// # Streams, versions and positions
//
// Events are appended to named streams. The first event of a stream has
// version 1 and a stream at version N holds N events, so [Exact](0) and
// [NoStream] ask for the same thing. Every stored event also has a [Position]
// in the global log, which all streams share. A position is a pair of
// unsigned integers ordered lexicographically, wide enough for PostgreSQL's
// (transaction id, sequence) and EventStoreDB's (commit, prepare) alike.
//
// # Guarantees every Store gives
//
//   - An append is atomic: all of its events are stored or none is.
//   - The expected version is checked atomically with the write; a mismatch
//     returns a [*VersionConflictError] that unwraps to
//     [ErrWrongExpectedVersion].
//   - Appending events whose IDs are already stored in the same stream, in the
//     same order and at the place the expected version names, is an
//     idempotent success that returns the original [AppendResult]. That is
//     how to settle an append that failed with an error wrapping
//     [ErrUnknownOutcome] (the connection broke while it committed): append
//     the same events, with the same IDs, at the same expected version.
//   - The global log, read with [Store.ReadAll] or [Store.Subscribe], never
//     skips a committed event: a reader only sees a prefix of the log that can
//     no longer change.
//   - Input is validated before anything is written ([ValidateAppend]), and
//     so are sizes: each store has a maximum event size and a maximum append
//     size in its Config ([SizeLimits], measured by [EventSize]), with
//     defaults that suit its backend. Too large an event or append returns
//     an [*InvalidEventError] that names the stream, the event and the size
//     against the limit.
//
// # Optional interfaces
//
// A store may also count the events between two positions without reading
// them ([Counter]: pgstore and memstore, exactly), and report the committed
// events its readers cannot see yet because an older transaction is still
// running ([BacklogReporter]: pgstore). Projection status and rebuild
// progress use them; on a store without them, counts beyond a limit are
// reported as estimates, never as differences of positions, which count
// nothing on EventStoreDB (byte offsets) and only roughly on PostgreSQL
// (sequence numbers that transactions interleave and rollbacks skip).
//
// The package es/estest holds the conformance suite that checks these
// guarantees for each implementation.
package es
