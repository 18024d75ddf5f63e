// Package kafkasink publishes a projection's integration events to Apache
// Kafka, exactly once for consumers that read with isolation level
// read_committed: the messages of a batch and the projection's checkpoint
// commit in one Kafka transaction. Other services consume them (see the
// consume subpackage).
//
//	pg := pgsink.New(pool, pgsink.Config{})            // state, leases, dead letters
//	sink := kafkasink.New(pg, kafkasink.Config{
//		Brokers: []string{"kafka-1:9092"},
//		Topics:  []kafkasink.Topic{{Name: "orders.v1", Partitions: 12, ReplicationFactor: 3}},
//	})
//	defer sink.Close()
//	w := kafkasink.NewWorker(store, reg, sink, orderEvents{}, projections.Config{})
//	err := w.Run(ctx)
//
// The handler gets a [*Tx] and maps domain events, which are internal and
// free to change, to integration events: public, versioned types of their
// own ("order.placed.v1"), published with [Tx.Publish] or
// [Tx.PublishMessage]. See the package example.
//
// # What it guarantees, and to whom
//
// A consumer reading with read_committed sees each source event's message
// exactly once, and the messages of one key (by default the event's
// stream, so one aggregate) in log order, in one partition. That holds
// across crashes anywhere (before or after producing, before or after the
// commit, before the keeper's copy of the checkpoint moved), broker
// restarts, and a second worker of the same projection. A consumer reading
// with read_uncommitted may also see the messages of aborted transactions:
// do not. Messages published again on purpose ([Sink.Republish]) carry the
// same ce_id, so consumers that are idempotent on it see no difference.
//
// How: each batch of the worker is one transaction of the projection's
// transactional producer, whose ID is [Config.TransactionalIDPrefix] + the
// projection's name. It holds the batch's messages and a record in the
// checkpoint topic ([Config.CheckpointTopic], compacted, one partition)
// keyed by the transactional ID, with the position of the batch's last
// event as its value ({"position":"c:p"}). Deployments that share a
// cluster must use different prefixes (say, one per service and
// environment): the transactional ID is what keeps their producers and
// their checkpoints apart. When a projection starts (its
// lease taken, then its first batch, or its first checkpoint read by a
// worker made with [NewWorker]), the sink initializes the producer, which
// aborts whatever transaction an earlier producer of the projection left
// open and fences that producer, and reads the checkpoint topic to its end
// with read_committed. The checkpoint found there is authoritative.
//
// # The keeper
//
// Everything else about the projection is kept in PostgreSQL by a [Keeper]
// (a *pgsink.Sink is one), like elasticsink's: its state (running, paused,
// stalled), the transient error its worker is retrying, its dead letters,
// its lease, and a copy of the Kafka checkpoint, moved after each commit.
// So `strata projections status`, pause and resume, [projections.WaitFor]
// and [projections.ReadStatus] treat it as any other projection. When the
// copy differs from Kafka's checkpoint (a crash between the commit and the
// copy, or a reset in PostgreSQL alone), Kafka's wins and the copy is moved
// to it. Dead letters ([projections.PolicyDeadLetter]) are stored in the
// keeper before the transaction that moves the checkpoint past them
// commits; a batch applied again does not store them twice.
//
// # Fencing
//
// The keeper's lease lets one worker run the projection at a time; the
// transactional ID is a second guard. A worker whose producer was fenced
// (another producer of the projection started after it, say because its
// lease was lost while a batch was in flight) fails the batch with a
// [*FencedError] ([ErrFenced]): not transient, and the projection is not
// marked stalled, since the other worker is the legitimate one. The
// worker's Run returns the error, and the sink logs why. A timeout of
// Kafka or a broker that is down is transient: the worker retries from the
// checkpoint with backoff, and status shows the projection as retrying,
// with the error, meanwhile. [Config.Timeout] bounds each batch and each
// start.
//
// A message Kafka refuses for what it is (larger than the topic's
// max.message.bytes, say) fails the handler of a worker made with
// [NewWorker], which sends each batch's messages before the handler
// returns: the error policy then stops the projection at the event that
// published it, or parks that event as a dead letter, as for any event a
// handler cannot handle.
//
// # Topics and headers
//
// A projection publishes to the topics of [Config.Topics] only. Messages
// follow the CloudEvents Kafka binding in binary mode (see message.go and
// [Envelope]): the value is the integration event's JSON, and headers
// ce_specversion, ce_id (the source event's ID: stable across republishing,
// the consumer's idempotency key), ce_type, ce_source ([Config.Source]),
// ce_subject (the stream), ce_time, ce_streamversion, ce_logposition,
// ce_correlationid, ce_causationid, traceparent, tracestate and
// content-type. [ParseHeaders] reads them back.
//
// # Running against an existing cluster
//
// The sink needs a cluster with transactions (Kafka 2.5 or later; a
// transaction state log with enough replicas for
// transaction.state.log.min.isr). With ACLs, its principal needs:
//
//   - Write and Describe on the projection's topics and on the checkpoint
//     topic, and Read on the checkpoint topic (the start reads it);
//   - Write and Describe on the transactional ID (prefix + projection
//     name; a prefixed ACL on [Config.TransactionalIDPrefix] covers every
//     projection);
//   - IdempotentWrite on the cluster (implied by transactional Write on
//     Kafka 3.0 and later);
//   - Create on the checkpoint topic, unless it exists, and on the topics
//     when [Config.CreateTopics] is set.
//
// A missing topic (with CreateTopics false) or one the principal may not
// describe or create fails the start with a [*TopicError] that names it;
// the worker retries it with backoff and its status says "retrying" with
// that error, so creating the topic or granting the ACL lets it go on
// without a restart.
// Set [Config.CheckpointReplicationFactor] to 3 on a production cluster,
// or create the checkpoint topic yourself (one partition,
// cleanup.policy=compact). Keep [Config.Timeout] below
// [Config.TransactionTimeout], and that below the broker's
// transaction.max.timeout.ms (15 minutes by default).
//
// # Rebuilds
//
// Nothing is published again unless asked: [Sink.Republish] moves the
// checkpoint of a stopped projection back, in Kafka (a transaction with
// only a checkpoint record) and in the keeper, and its next worker
// publishes the events after that position again, with their original
// ce_id. Consumers must deduplicate on ce_id (the consume package does).
// A checkpoint topic that has no checkpoint for a projection whose keeper
// has one (the topic was deleted, or this is another cluster) stalls the
// projection with a [*CheckpointLostError] rather than publishing
// everything again: Republish from the position the consumers need, then
// resume the projection.
//
// # Batch size
//
// The sink is a [projections.BatchSizer]: a worker whose
// projections.Config.BatchSize is 0 takes batches of [Config.BatchSize]
// (5000) events, one transaction each: about twice the throughput of
// batches of 500 (docs/benchmarks.md).
//
// This package is in a module of its own,
// github.com/stratadev/strata/projections/kafkasink, so that applications
// that do not use it do not get a Kafka client in their module graph; its
// test support is [kafkatest].
//
// [kafkatest]: https://pkg.go.dev/github.com/stratadev/strata/projections/kafkasink/kafkatest
package kafkasink
