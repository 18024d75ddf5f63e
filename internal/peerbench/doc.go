// Package peerbench compares strata's PostgreSQL event store with a plain
// table written and read with pgx ("raw") and with another Go event-sourcing
// library, github.com/hallgren/eventsourcing on its SQL event store
// ("peer"), on the same servers, with the same events, in the same run. It
// holds benchmarks and the test that keeps them honest, nothing else; it is
// a module of its own so that the peer's dependencies stay out of strata's.
// docs/benchmarks.md describes what each side does and the results.
package peerbench
