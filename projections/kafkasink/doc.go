// Package kafkasink will publish a projection's integration events to
// Apache Kafka exactly once in effect: the messages of a batch and the
// projection's checkpoint commit in one Kafka transaction. It is a module
// of its own, so that an application of the core does not get a Kafka
// client; for now it holds the test support, [kafkatest], that the sink
// and its consumers are tested with.
//
// [kafkatest]: https://pkg.go.dev/github.com/stratadev/strata/projections/kafkasink/kafkatest
package kafkasink
