package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler applies a batch of messages of one partition, in offset order,
// to a read model in tx. The consumer commits tx with the partition's
// offset. An error rolls the whole batch back: [BadMessage] for a message
// that can never be handled (it follows the error policy and the batch is
// applied without it), any other error for a transient failure (the batch
// is tried again after a backoff).
type Handler interface {
	HandleBatch(ctx context.Context, tx pgx.Tx, msgs []Message) error
}

// HandlerFunc is a function as a [Handler].
type HandlerFunc func(ctx context.Context, tx pgx.Tx, msgs []Message) error

// HandleBatch calls f.
func (f HandlerFunc) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []Message) error {
	return f(ctx, tx, msgs)
}

// ReadModel consumes topics into a PostgreSQL read model: each batch's rows
// and the partition's next offset commit in one transaction, so every
// message takes effect exactly once (see the package documentation).
type ReadModel struct {
	core
	handler Handler

	mu sync.Mutex
	// expected holds, per partition assigned, the next offset that
	// kafka_offsets holds for this consumer, as read at assignment and
	// moved by its own commits; a partition without a row is missing.
	expected map[partitionKey]int64
}

// NewReadModel returns a consumer that applies the messages of
// cfg.Topics with h. It does no I/O; it fails only when cfg is not valid.
func NewReadModel(cfg Config, h Handler) (*ReadModel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("consume: NewReadModel: the handler is nil")
	}
	return &ReadModel{core: newCore(cfg, KindReadModel), handler: h, expected: make(map[partitionKey]int64)}, nil
}

// errSuperseded means a batch's offset guard found that kafka_offsets no
// longer holds the offset this consumer expected: another member of the
// group took the partition and moved it. The batch was rolled back.
var errSuperseded = errors.New("consume: another consumer moved the partition's offset")

// Run consumes until ctx ends, then returns nil; or until a bad message
// stops it under PolicyStop, then returns a [*StalledError]. It fails at
// once when PostgreSQL or the brokers cannot be reached. Transient errors
// are retried with backoff and shown by [Status] meanwhile.
//
// Each partition assigned to the consumer is read from the offset stored
// in kafka_offsets, not from Kafka's committed offsets, which a read model
// never uses.
func (r *ReadModel) Run(ctx context.Context) error {
	cl, err := r.newClient(
		kgo.AdjustFetchOffsetsFn(r.adjust),
		kgo.OnPartitionsRevoked(r.forget),
		kgo.OnPartitionsLost(r.forget),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := r.start(ctx, cl); err != nil {
		return stoppedEarly(ctx, err)
	}
	return r.loop(ctx, cl, func(ctx context.Context, fetches kgo.Fetches) error { return r.process(ctx, cl, fetches) })
}

// adjust seeks each partition assigned to the offset kafka_offsets holds,
// and remembers it as the offset the next batch's guard expects.
func (r *ReadModel) adjust(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var topics []string
	for t := range assigned {
		topics = append(topics, t)
	}
	rows, err := r.cfg.Pool.Query(ctx, r.expand(`SELECT topic, partition, next_offset FROM {{schema}}.kafka_offsets
		WHERE consumer_group = $1 AND topic = ANY($2)`), r.cfg.Group, topics)
	if err != nil {
		return nil, fmt.Errorf("consume: read the offsets of group %s: %w", r.cfg.Group, err)
	}
	stored := make(map[partitionKey]int64)
	var k partitionKey
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&k.topic, &k.partition, &next}, func() error {
		stored[k] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consume: read the offsets of group %s: %w", r.cfg.Group, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, parts := range assigned {
		for p := range parts {
			k := partitionKey{t, p}
			if off, ok := stored[k]; ok {
				parts[p] = kgo.NewOffset().At(off).WithEpoch(-1)
				r.expected[k] = off
			} else {
				delete(r.expected, k)
			}
		}
	}
	r.log.DebugContext(ctx, "consume: partitions assigned", slog.Any("offsets", stored))
	return assigned, nil
}

// forget drops what the consumer knows of partitions it no longer has.
func (r *ReadModel) forget(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, parts := range gone {
		for _, p := range parts {
			delete(r.expected, partitionKey{t, p})
		}
	}
}

// process applies a poll, one transaction per partition. Batches are per
// partition rather than across partitions so that the offset guard of one
// partition, failing after a rebalance, rolls back that partition's batch
// only. On an error it rewinds the partitions it did not finish.
func (r *ReadModel) process(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
	parts := partitions(fetches)
	for i, p := range parts {
		err := r.applyPartition(ctx, cl, p)
		if errors.Is(err, errSuperseded) {
			if err = r.resync(ctx, cl, partitionKey{p.Topic, p.Partition}); err == nil {
				continue
			}
		}
		if err != nil {
			to := make(map[partitionKey]int64)
			for _, q := range parts[i:] {
				to[partitionKey{q.Topic, q.Partition}] = q.Records[0].Offset
			}
			var stalled *StalledError
			if !errors.As(err, &stalled) {
				rewind(cl, to)
			}
			return err
		}
	}
	return nil
}

// resync reads a partition's offset again after its guard failed, and
// fetches it from there should the partition still be assigned.
func (r *ReadModel) resync(ctx context.Context, cl *kgo.Client, k partitionKey) error {
	r.log.InfoContext(ctx, "consume: batch rolled back: another consumer moved the offset",
		slog.String("topic", k.topic), slog.Int("partition", int(k.partition)))
	var next int64
	err := r.cfg.Pool.QueryRow(ctx, r.expand(`SELECT next_offset FROM {{schema}}.kafka_offsets
		WHERE consumer_group = $1 AND topic = $2 AND partition = $3`), r.cfg.Group, k.topic, k.partition).Scan(&next)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// Unknown for now: the batch is tried again, and its guard fails
		// again until the offset can be read.
		delete(r.expected, k)
		return fmt.Errorf("consume: read the offset of topic %s partition %d: %w", k.topic, k.partition, err)
	}
	r.expected[k] = next
	rewind(cl, map[partitionKey]int64{k: next})
	return nil
}

// applyPartition applies the records of one partition of a poll in one
// transaction, setting bad messages aside by the error policy.
func (r *ReadModel) applyPartition(ctx context.Context, cl *kgo.Client, p kgo.FetchTopicPartition) error {
	k := partitionKey{p.Topic, p.Partition}
	msgs := make([]Message, 0, len(p.Records))
	var stall *StalledError
	deadLettered := 0
	for _, rec := range p.Records {
		m, err := r.parse(rec)
		if err == nil {
			msgs = append(msgs, m)
			continue
		}
		if err := r.bad(ctx, cl, messageOf(rec, m.Envelope, r.cfg.Group), err); err != nil {
			if !errors.As(err, &stall) {
				return err
			}
			break
		}
		deadLettered++
	}
	for {
		next := p.Records[len(p.Records)-1].Offset + 1
		if stall != nil {
			next = stall.Offset
		}
		err := r.commit(ctx, k, msgs, next, visibleEnd(p), deadLettered)
		var me *MessageError
		if errors.As(err, &me) && me.Topic == k.topic && me.Partition == k.partition {
			i := indexOf(msgs, me.Offset)
			if i < 0 {
				return fmt.Errorf("consume: the handler refused the message at %s, which is not in its batch: %w", me.At(), err)
			}
			if err := r.bad(ctx, cl, msgs[i], me.Err); err != nil {
				if !errors.As(err, &stall) {
					return err
				}
				msgs = msgs[:i]
				continue
			}
			deadLettered++
			msgs = append(msgs[:i], msgs[i+1:]...)
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if stall != nil {
		return stall
	}
	return nil
}

func indexOf(msgs []Message, offset int64) int {
	for i, m := range msgs {
		if m.Offset == offset {
			return i
		}
	}
	return -1
}

// commit applies msgs, moves the partition's offset to next and counts
// the messages dead-lettered in one transaction. The offset moves only
// from the value this consumer expects: when another consumer moved it,
// nothing commits and the error is errSuperseded.
func (r *ReadModel) commit(ctx context.Context, k partitionKey, msgs []Message, next, highWatermark int64, deadLettered int) error {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("consume: begin the batch of topic %s partition %d: %w", k.topic, k.partition, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if len(msgs) > 0 {
		hctx, batch, applies := r.startBatch(ctx, k.topic, msgs)
		err := r.handler.HandleBatch(hctx, tx, msgs)
		endSpans(batch, applies, err)
		if err != nil {
			var me *MessageError
			if errors.As(err, &me) {
				return err
			}
			return fmt.Errorf("consume: handle the batch of topic %s partition %d from offset %d: %w", k.topic, k.partition, msgs[0].Offset, err)
		}
	}
	r.mu.Lock()
	expected, known := r.expected[k]
	r.mu.Unlock()
	var sql string
	args := []any{r.cfg.Group, k.topic, k.partition, next, highWatermark}
	if known {
		sql = `UPDATE {{schema}}.kafka_offsets SET next_offset = $4, high_watermark = $5, updated_at = now()
			WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $6`
		args = append(args, expected)
	} else {
		sql = `INSERT INTO {{schema}}.kafka_offsets (consumer_group, topic, partition, next_offset, high_watermark)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`
	}
	tag, err := tx.Exec(ctx, r.expand(sql), args...)
	if err != nil {
		return fmt.Errorf("consume: move the offset of topic %s partition %d to %d: %w", k.topic, k.partition, next, err)
	}
	if tag.RowsAffected() != 1 {
		return errSuperseded
	}
	if err := r.status.count(ctx, tx, 0, deadLettered); err != nil {
		return err
	}
	// Once the batch is written, a stop does not interrupt its commit: a
	// commit cut off by a cancelled context may have happened anyway, and
	// the consumer would stop without counting or remembering it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		// The commit may have happened; the guard tells on the next batch.
		return fmt.Errorf("consume: commit the batch of topic %s partition %d up to offset %d: %w", k.topic, k.partition, next, err)
	}
	r.mu.Lock()
	r.expected[k] = next
	r.mu.Unlock()
	n := int64(len(msgs) + deadLettered)
	if known {
		n = next - expected
	}
	r.metrics.committed(ctx, k, n, next, highWatermark)
	return nil
}
