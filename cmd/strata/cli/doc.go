// Package cli holds the commands of the strata binary, on cobra, for an
// application to mount in its own binary with its projections:
//
//	root := cli.New(cli.Config{Name: "orders", Registry: reg,
//		Projections: []cli.Projection{{Projection: orderViews{}}}})
//	os.Exit(cli.Main(context.Background(), root, os.Args[1:]))
//
// Then `orders projections rebuild order_view` works. The generic strata
// binary is [New] with a zero [Config]: it runs every command that needs no
// application code (migrate, streams, events, projections list, status,
// reset, pause, resume, dead-letters list and skip, consumers, processes list
// and show) by reading the store, the checkpoint tables and the process
// managers' tables. Projections run, rebuild, verify and dead-letters
// retry need the projections; so does a reset to the start that empties the
// tables (the generic binary refuses it unless --idempotent).
//
// Projections kept in Elasticsearch ([Config.ElasticProjections]) and
// projections that publish to Kafka ([Config.KafkaProjections]) keep their
// state in PostgreSQL with the others. A Kafka projection's checkpoint in
// Kafka is authoritative: it has no tables to rebuild, so projections
// rebuild refuses it and says what it would do, and with --republish
// publishes every event again (kafkasink.Sink.Republish); a reset
// backwards needs --republish too.
//
// Settings come from flags, then the environment: STRATA_DATABASE_URL,
// STRATA_ESDB_URL, STRATA_ELASTICSEARCH_URL, STRATA_KAFKA_BROKERS and
// STRATA_SCHEMA. The
// application's own commands, mounted beside these (a serve command), read
// the same resolved settings with [ReadSettings], so that they connect
// where the mounted commands do. A bad value is a usage error that names
// its flag or environment variable. [Main]
// returns the exit code: 0 success, 1 the operation failed, 2 usage error,
// and prints errors on one line (with detail under --verbose).
//
// This package is in a module of its own,
// github.com/stratadev/strata/cmd/strata, so that applications that do not
// use it do not get cobra in their module graph.
package cli
