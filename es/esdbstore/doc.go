// Package esdbstore is an [es.Store] on EventStoreDB or KurrentDB, built on
// EventStore-Client-Go v4:
//
//	store, err := esdbstore.Open(ctx, esdbstore.Config{ConnectionString: "kurrentdb://localhost:2113?tls=false"})
//	if err != nil { … } // the server did not answer: Open fails fast
//	defer store.Close()
//	orders := es.NewRepository(store, registry, order.New, es.RepositoryConfig{StreamPrefix: "order-"})
//
// # Mapping
//
//   - A stream version is the server's stream revision plus one: [es.Exact](n)
//     expects revision n-1; [es.NoStream], [es.Any] and [es.StreamExists] map
//     to the server's own expected states.
//   - [es.Position] is the server's $all position, {Commit, Prepare}: byte
//     offsets in the server's transaction log, so the difference of two
//     positions is no count of events. The store is not an [es.Counter]:
//     projection status counts lag by reading, up to a limit beyond which it
//     reports a lower bound, and rebuild progress is an estimate.
//   - The event type and the content type (application/json) are the
//     client's fields; strata's metadata is the event's custom metadata, a
//     JSON object of strings. Correlation and causation IDs are also written
//     as $correlationId and $causationId, which the server's system
//     projections read, and dropped again on read.
//   - The store's global log is $all without system events: streams and
//     event types that start with $ (stream metadata, link events, the
//     server's own events) are skipped by ReadAll and Head and filtered out
//     on the server for Subscribe. Appends to such names are refused with
//     [es.ErrInvalidEvent].
//   - A stream deleted on the server (tombstoned) fails reads and appends
//     with an error wrapping [es.ErrStreamDeleted].
//
// # Sizes
//
// The server refuses an append larger than its --max-append-size (1 MiB by
// default) with an error that names no event. The store checks first: an
// event larger than [Config.MaxEventSize] or an append larger than
// [Config.MaxAppendSize] (both 1 MiB less 32 KiB by default, as
// [es.EventSize] measures them) is refused with an [*es.InvalidEventError]
// that names the stream, the event and its size against the limit, and
// nothing is sent. A server configured with another limit wants these set
// a little below it.
//
// # Event IDs
//
// The server checks event IDs only to make a retried write idempotent, and
// only at the place the expected revision names (or, with any, for IDs in
// its bounded cache of recent writes). It stores an ID that exists in
// another stream, or elsewhere in the same stream, without complaint. The es
// package promises more: an ID is stored once, and a retry anywhere returns
// the original result. So the store keeps an event ID index: before an
// append, each ID the caller chose (IDs the store assigns are new version 7
// UUIDs and skip it) is written as the stream strata-eventid-<id>, whose one
// event (of the system type $strata.EventID) names the stream the ID belongs
// to. An ID indexed for another stream fails the append with a
// [*es.DuplicateEventIDError]; an ID indexed for the same stream makes the
// store read the stream to tell a retry from a duplicate. That costs one
// write per caller-chosen ID; [Config.DisableIDIndex] turns it off and
// leaves the server's rules. Two identical appends racing with [es.Any] can
// still both be written, as with the server's own check.
//
// # Subscriptions and faults
//
// [Store.Subscribe] re-subscribes after a dropped connection from the last
// position it yielded, with backoff (see [Config]), so a projection sees
// neither a gap nor a duplicate. [Open] reads $all once, so an unreachable
// server fails at start with a clear error. The v4 client gives up
// reconnecting after its discovery attempts (maxDiscoverAttempts in the
// connection string, 10 by default); the store then replaces its client.
//
// # Verification
//
// The conformance suite in es/estest runs in CI against esdbtest, a
// protocol-level test server that implements the gRPC services the client
// calls and follows the server's documented semantics. Setting
// TEST_ESDB_URL runs the same suite against a real node as well, each
// subtest in a namespace of its own (see [Config.Namespace]).
//
// This package is in a module of its own,
// github.com/stratadev/strata/es/esdbstore, so that applications that do not
// use it do not get EventStore-Client-Go and gRPC in their module graph.
package esdbstore
