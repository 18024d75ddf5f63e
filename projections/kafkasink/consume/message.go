package consume

import (
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/projections/kafkasink"
)

// Message is a consumed message as handlers see it: its envelope, read
// from its headers with [kafkasink.ParseHeaders], its key and value, and
// where it was in Kafka.
type Message struct {
	Envelope  kafkasink.Envelope
	Key       []byte
	Value     []byte
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Headers are all of the message's headers, those of the envelope
	// included.
	Headers []kgo.RecordHeader

	group string
}

// commandIDSpace is the UUID namespace of the command IDs that messages
// derive.
var commandIDSpace = uuid.MustParse("6f1c1c55-1f0e-4f44-9d53-2b8f0f6b7a41")

// CommandID returns the ID that a command made from this message should
// carry (see [cqrs.Identified]): a version 5 UUID of the consumer group
// and the message's ce_id. It is the same every time the message is
// delivered to the same group, also when it was published again, so the
// bus answers a redelivered command with the original result instead of
// applying it twice; and it differs between groups, so that two services
// that react to the same event do not share IDs.
//
// [cqrs.Identified]: https://pkg.go.dev/github.com/stratadev/strata/cqrs#Identified
func (m Message) CommandID() string {
	b := make([]byte, 0, len(m.group)+1+36)
	b = append(b, m.group...)
	b = append(b, 0)
	b = append(b, m.Envelope.ID.String()...)
	return uuid.NewSHA1(commandIDSpace, b).String()
}

// The headers a dead-lettered message gets on top of its own (see
// [Config.DeadLetterTopic]).
const (
	HeaderDeadLetterReason    = "strata_dlq_reason"    // why it could not be consumed
	HeaderDeadLetterGroup     = "strata_dlq_group"     // the consumer group that gave up on it
	HeaderDeadLetterTopic     = "strata_dlq_topic"     // where it came from: topic,
	HeaderDeadLetterPartition = "strata_dlq_partition" // partition (decimal),
	HeaderDeadLetterOffset    = "strata_dlq_offset"    // and offset (decimal)
)

func messageOf(r *kgo.Record, env kafkasink.Envelope, group string) Message {
	return Message{Envelope: env, Key: r.Key, Value: r.Value, Topic: r.Topic, Partition: r.Partition,
		Offset: r.Offset, Timestamp: r.Timestamp, Headers: r.Headers, group: group}
}
