package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/internal/backoff"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
)

// partitionKey names a partition of a topic.
type partitionKey struct {
	topic     string
	partition int32
}

// core is what both shapes of consumer share: the client, the polling
// loop with its retries, the checks of each message and the dead-letter
// topic.
type core struct {
	cfg     Config
	status  statusWriter
	expand  func(string) string
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *consumerMetrics
}

func newCore(cfg Config, kind string) core {
	cfg = cfg.withDefaults()
	expand := expander(cfg.Schema)
	return core{cfg: cfg, expand: expand, log: cfg.Logger.With(slog.String("group", cfg.Group)),
		tracer:  cfg.TracerProvider.Tracer(TracerName),
		status:  statusWriter{pool: cfg.Pool, expand: expand, group: cfg.Group, kind: kind},
		metrics: newConsumerMetrics(cfg.MeterProvider, cfg.Group)}
}

// newClient makes the group's client. Rebalances wait while a poll's
// messages are handled (BlockRebalanceOnPoll), so that the rebalance
// callbacks and offset changes never run in the middle of a batch.
func (c *core) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	opts = append(opts, c.cfg.ClientOptions...)
	opts = append(opts, kgo.ConsumerGroup(c.cfg.Group), kgo.ConsumeTopics(c.cfg.Topics...),
		kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.BlockRebalanceOnPoll())
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("consume: client of group %s: %w", c.cfg.Group, err)
	}
	return cl, nil
}

// start migrates the tables and checks that the brokers answer, so that a
// consumer fails fast when it cannot work at all.
func (c *core) start(ctx context.Context, cl *kgo.Client) error {
	if err := Migrate(ctx, c.cfg.Pool, c.cfg.Schema, c.cfg.Logger); err != nil {
		return err
	}
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("consume: group %s: reach the brokers %v: %w", c.cfg.Group, c.cfg.Brokers, err)
	}
	c.warnMissingTopics(ctx, cl)
	return c.status.set(ctx, StateRunning, "", nil, 0)
}

// warnMissingTopics logs the topics of the consumer that do not exist: the
// client joins the group only once one of them exists, and consumes a topic
// only once it exists, so until then the consumer waits without a word
// (and `strata consumers --kafka-brokers` shows its group without a
// member). When the check itself fails, that is logged at debug level and
// the consumer starts all the same.
func (c *core) warnMissingTopics(ctx context.Context, cl *kgo.Client) {
	details, err := kadm.NewClient(cl).ListTopics(ctx, c.cfg.Topics...)
	if err != nil {
		c.log.DebugContext(ctx, "consume: could not check that the topics exist", "topics", c.cfg.Topics, "err", err)
		return
	}
	var missing []string
	for _, t := range c.cfg.Topics {
		if d, ok := details[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		c.log.WarnContext(ctx, "consume: topics do not exist; the consumer waits for them and joins its group once one exists",
			"missing", missing)
	}
}

// stoppedEarly is what Run returns when its start failed with err: nil
// when that is because ctx ended, a clean stop.
func stoppedEarly(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// loop polls and hands each poll to process until ctx ends or process
// stalls. A transient error from process is retried with backoff, after
// process rewound the partitions it did not finish.
func (c *core) loop(ctx context.Context, cl *kgo.Client, process func(context.Context, kgo.Fetches) error) error {
	bo := backoff.Backoff{Min: c.cfg.RetryMin, Max: c.cfg.RetryMax}
	attempt := 0
	for {
		fetches := cl.PollRecords(ctx, c.cfg.BatchSize)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			cl.AllowRebalance()
			return c.stopped(ctx, nil)
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.log.WarnContext(ctx, "consume: fetch failed", slog.String("topic", topic),
					slog.Int("partition", int(partition)), slog.Any("err", err))
			}
		})
		err := process(ctx, fetches)
		cl.AllowRebalance()
		var stalled *StalledError
		switch {
		case err == nil:
			if attempt > 0 {
				attempt = 0
				c.setStatus(ctx, StateRunning, "", nil, 0)
				c.log.InfoContext(ctx, "consume: recovered")
			}
		case ctx.Err() != nil:
			return c.stopped(ctx, nil)
		case errors.As(err, &stalled):
			return c.stopped(ctx, stalled)
		default:
			attempt++
			c.setStatus(ctx, StateRetrying, err.Error(), nil, attempt)
			c.log.WarnContext(ctx, "consume: transient error; retrying", slog.Int("attempt", attempt), slog.Any("err", err))
			if !bo.Wait(ctx, attempt-1) {
				return c.stopped(ctx, nil)
			}
		}
	}
}

func (c *core) setStatus(ctx context.Context, state State, failure string, at *Position, attempts int) {
	if err := c.status.set(ctx, state, failure, at, attempts); err != nil && ctx.Err() == nil {
		c.log.WarnContext(ctx, "consume: status not recorded", slog.Any("err", err))
	}
}

// stopped records the end of Run: stalled at a message, or stopped.
func (c *core) stopped(ctx context.Context, stalled *StalledError) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ShutdownTimeout)
	defer cancel()
	if stalled == nil {
		c.setStatus(sctx, StateStopped, "", nil, 0)
		return nil
	}
	at := &Position{Topic: stalled.Topic, Partition: stalled.Partition, Offset: stalled.Offset}
	c.setStatus(sctx, StateStalled, stalled.Err.Error(), at, 0)
	c.log.ErrorContext(ctx, "consume: stalled", slog.String("at", at.String()), slog.Any("err", stalled.Err))
	return stalled
}

// parse checks a record and reads its envelope; an error is the reason it
// is a bad message.
func (c *core) parse(r *kgo.Record) (Message, error) {
	if len(r.Value) > c.cfg.MaxValueBytes {
		return Message{}, fmt.Errorf("value of %d bytes is over the limit of %d (Config.MaxValueBytes)", len(r.Value), c.cfg.MaxValueBytes)
	}
	env, err := kafkasink.ParseHeaders(r.Headers)
	if err != nil {
		return Message{}, err
	}
	return messageOf(r, env, c.cfg.Group), nil
}

// bad decides the fate of a bad message: under PolicyStop a
// [*StalledError], under PolicyDeadLetter nil once the message is in the
// dead-letter topic, or the error that kept it from getting there.
func (c *core) bad(ctx context.Context, cl *kgo.Client, m Message, reason error) error {
	if c.cfg.ErrorPolicy != projections.PolicyDeadLetter {
		return &StalledError{Group: c.cfg.Group, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Err: reason}
	}
	headers := slices.Clone(m.Headers)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDeadLetterReason, Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: HeaderDeadLetterGroup, Value: []byte(c.cfg.Group)},
		kgo.RecordHeader{Key: HeaderDeadLetterTopic, Value: []byte(m.Topic)},
		kgo.RecordHeader{Key: HeaderDeadLetterPartition, Value: []byte(strconv.FormatInt(int64(m.Partition), 10))},
		kgo.RecordHeader{Key: HeaderDeadLetterOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))})
	rec := &kgo.Record{Topic: c.cfg.DeadLetterTopic, Key: m.Key, Value: m.Value, Headers: headers, Timestamp: m.Timestamp}
	at := Position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("consume: move the message at %s to dead-letter topic %s: %w", at, c.cfg.DeadLetterTopic, err)
	}
	c.metrics.deadLetters.Add(ctx, 1, c.metrics.attrs)
	c.log.WarnContext(ctx, "consume: message dead-lettered", slog.String("at", at.String()),
		slog.String("dead_letter_topic", c.cfg.DeadLetterTopic), slog.Any("err", reason))
	return nil
}

// rewind makes the client fetch the partitions again from the given
// offsets: the messages of a poll that were not applied.
func rewind(cl *kgo.Client, to map[partitionKey]int64) {
	if len(to) == 0 {
		return
	}
	set := make(map[string]map[int32]kgo.EpochOffset)
	for k, off := range to {
		if set[k.topic] == nil {
			set[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		set[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	cl.SetOffsets(set)
}

// partitions returns the partitions of a poll that have records, in the
// order the poll gave them.
func partitions(fetches kgo.Fetches) []kgo.FetchTopicPartition {
	var out []kgo.FetchTopicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			out = append(out, p)
		}
	})
	return out
}

// graceful returns a context that ends grace after ctx ends, for work in
// flight that should finish rather than be cut off when Run is stopped.
func graceful(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() { stop(); cancel() }
}

// visibleEnd is the end of partition p that a read-committed consumer can
// reach: its high watermark, less the commit marker of the transaction
// that wrote the last message polled. Kafka writes a marker into every
// partition a transaction wrote, after its messages; the marker takes an
// offset but is never delivered, so a consumer that has handled every
// message of a transactional topic (as kafkasink publishes) stays one
// offset short of the high watermark, and its lag would never reach 0.
// The marker of the last message's transaction lies between that message
// and the high watermark, so the end is never put before a message not
// yet read. Markers of other producers' transactions still count.
func visibleEnd(p kgo.FetchTopicPartition) int64 {
	if len(p.Records) == 0 {
		return p.HighWatermark
	}
	last := p.Records[len(p.Records)-1]
	if last.Attrs.IsTransactional() && p.HighWatermark > last.Offset+1 {
		return p.HighWatermark - 1
	}
	return p.HighWatermark
}
