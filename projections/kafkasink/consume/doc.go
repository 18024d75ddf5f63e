// Package consume consumes the integration events that another service
// published to Apache Kafka (see the message contract of
// [github.com/stratadev/strata/projections/kafkasink]) in one of two
// shapes: into a PostgreSQL read model ([ReadModel]) or into commands on a
// [cqrs.Bus] ([Commands]). Both are members of a Kafka consumer group,
// read with read_committed isolation, keep each partition's order, and
// keep their state in PostgreSQL, where [Status] reads it.
//
// # Read models: effectively once
//
// A [Handler] applies a batch of one partition's messages in a PostgreSQL
// transaction, and the consumer moves the partition's offset in the table
// kafka_offsets in that same transaction. A batch either commits with its
// offset or not at all, so a crash, a kill or a lost connection at any
// moment makes the batch apply again from where the last one ended, never
// twice. Kafka's own committed offsets are not used: when the group
// assigns a partition, the consumer seeks it to the offset in
// kafka_offsets.
//
//	rm, err := consume.NewReadModel(consume.Config{
//		Brokers: brokers, Group: "order-stats", Topics: []string{"orders"},
//		Pool: pool, Schema: "stats",
//	}, consume.HandlerFunc(func(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
//		for _, m := range msgs {
//			// decode m.Value by m.Envelope.Type; upsert rows with tx
//		}
//		return nil
//	}))
//	...
//	err = rm.Run(ctx)
//
// A rebalance can leave a member handling a batch of a partition the group
// has given to another member (a member that stalled past its rebalance
// timeout, say). Its offset write is guarded: it moves the offset only
// from the value the member read or wrote last, so when another member
// moved it in between, the guard matches no row and the whole transaction
// rolls back. Such a zombie can never apply a batch twice. Batches are per
// partition rather than across partitions so that this rolls back the
// partition's batch alone. Rebalances wait while a poll's messages are
// being applied (franz-go's BlockRebalanceOnPoll), and a partition's
// records that were fetched but not applied are fetched again from the
// stored offset, so nothing is skipped either.
//
// # Commands: idempotent by a derived command ID
//
// A [MapFunc] makes each message into a command, which [Commands]
// dispatches; the offset is committed to Kafka only after the dispatch
// returned. The command must carry [Message.CommandID], a UUID derived
// from the group and the message's ce_id, as its [cqrs.Identified] ID. A
// message delivered again (after a crash between dispatch and commit, or
// a rebalance) then makes the same command with the same ID, and the bus
// answers with the original result instead of applying it again: its
// events' IDs derive from the command ID, and the store refuses to store
// them twice. A mapping that returns a command without an ID stops the
// consumer with a [*NotIdentifiedError].
//
// This holds for any redelivery that appends events. cqrs only finds the
// original result of a command whose decision now would be an error or
// nothing (a rejection) among the stream's latest
// [cqrs.AggregateConfig.IdempotencyWindow] events: a very late
// redelivery, after the aggregate has moved on further than that, may be
// reported as a rejection rather than a repeat. It is still not applied
// twice.
//
// What a dispatch returns decides what happens to the message: see
// [Commands]. A domain rejection is an outcome, committed and counted; a
// transient error is retried with backoff without committing.
//
// # Bad messages and the error policy
//
// A message is bad (see [ErrBadMessage]) when its headers are not an
// integration event's ([kafkasink.ParseHeaders] fails), when its value is
// larger than [Config.MaxValueBytes], when the mapping fails, or when the
// handler refuses it with [BadMessage]. Under PolicyStop (the default) the
// consumer stops at it: Run returns a [*StalledError] naming the topic,
// partition and offset and the reason, [Status] shows the same, and
// nothing after it is consumed; started again, the consumer tries the
// message again. Under PolicyDeadLetter the message is produced, as it
// was, to [Config.DeadLetterTopic] with headers that say why and where it
// came from ([HeaderDeadLetterReason] and the others), and the consumer
// goes on. A message is moved before its offset is committed, so none is
// lost; one may reach the dead-letter topic twice after a crash.
//
// # Consumer groups
//
// Run as many processes with the same [Config.Group] as the topics have
// partitions to spread the work; Kafka assigns each partition to one
// member at a time and reassigns a leaving or dead member's partitions
// (a killed member's after its session timeout). The group is also the
// consumer's name in kafka_consumers and kafka_offsets and in
// [Message.CommandID], so renaming it starts the read model from the
// beginning and changes the command IDs.
//
// The state in kafka_consumers is what each consumer last recorded: a
// process killed with SIGKILL, or whose machine died, never records that
// it stopped, and its group still reads "running". [Members] asks Kafka
// instead, which counts a group's live members; it drops a killed member
// once the member's session timeout has passed without a heartbeat
// (franz-go's default is 45s; the consumers leave it alone unless
// kgo.SessionTimeout is in [Config.ClientOptions]). `strata consumers`
// shows both when it is given the brokers.
//
// # Scaling a read model past one machine
//
// A projection worker is one process: leases keep one worker active per
// projection. A read model that one worker cannot keep up with (a slow
// sink, heavy rows) is published once, by a kafkasink worker, to a topic
// with as many partitions as processes it may ever need, and consumed by N
// processes that run a [ReadModel] with the same [Config.Group]. Kafka
// spreads the partitions over the processes and moves them when a process
// joins, leaves or dies; each process commits its rows with its
// partitions' offsets in its own PostgreSQL transactions, so a partition
// that moves goes on from the last batch its former holder committed, and
// the offset guard rolls back a batch of a member that lost its partition
// meanwhile. Order holds per key, because a key maps to one partition and a
// partition to one member at a time; there is no order across keys to
// keep. There is no coordinator of strata's own: the group is Kafka's, the
// state is in the read model's database.
//
// Measured (BenchmarkScaleOut, a shared 2-core machine, see
// docs/benchmarks.md): a topic of 8 partitions holding 20,000 messages, a
// handler that waits 20ms per batch of up to 50 messages, standing in for
// a slow sink. One process read 2,160 to 2,220 messages/s, two 4,270 to
// 4,420 (1.95 to 1.99 times one), four 8,200 to 8,490 (3.79 to 3.83
// times). When one of two processes consuming a steady stream was killed
// with SIGKILL, the survivor committed batches of every partition 5.0 to
// 7.3s later, with a session timeout of 6s: a dead member's partitions
// wait for its session to expire (franz-go's default is 45s; set
// kgo.SessionTimeout in [Config.ClientOptions] to fail over sooner, at the
// cost of more heartbeats), whereas a member that stops cleanly leaves the
// group at once.
//
// [cqrs.Bus]: https://pkg.go.dev/github.com/stratadev/strata/cqrs#Bus
// [cqrs.Identified]: https://pkg.go.dev/github.com/stratadev/strata/cqrs#Identified
// [cqrs.AggregateConfig.IdempotencyWindow]: https://pkg.go.dev/github.com/stratadev/strata/cqrs#AggregateConfig
package consume
