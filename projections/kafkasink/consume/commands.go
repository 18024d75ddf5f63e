package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/cqrs"
)

// MapFunc makes the command a message asks for. The command must implement
// [cqrs.Identified] with msg.CommandID() (or another ID derived from the
// message alone). A nil command and a nil error mean the message asks for
// no command (a type this consumer does not act on): it is committed
// without a dispatch. An error makes the message a bad message (see
// [ErrBadMessage]): undecodable, of an unknown type.
type MapFunc func(ctx context.Context, msg Message) (cmd any, err error)

// Commands consumes topics into commands on a [cqrs.Bus]: each message is
// mapped to a command and dispatched, and its offset is committed to Kafka
// only once the dispatch returned. A message delivered again (after a
// crash or a rebalance) makes the same command with the same ID, which the
// bus answers with the original result instead of applying it again.
//
// The outcomes of a dispatch:
//   - success, or a repeat the bus recognized: committed;
//   - the domain's refusal ([cqrs.ErrRejected], [cqrs.ErrInvalidCommand],
//     [cqrs.ErrAggregateNotFound], [cqrs.ErrAggregateExists]): an outcome,
//     not a failure; logged, counted in [Status] and committed;
//   - a command the bus cannot handle ([cqrs.ErrUnknownCommand],
//     [cqrs.ErrCommandIDReused], [cqrs.ErrHandlerPanic]): a bad message,
//     which follows the error policy;
//   - anything else (a lost connection, conflicts after the bus's own
//     retries): transient; not committed, dispatched again after a backoff.
type Commands struct {
	core
	bus   *cqrs.Bus
	mapFn MapFunc
}

// NewCommands returns a consumer that dispatches the commands mapFn makes
// of the messages of cfg.Topics on bus. It does no I/O; it fails only when
// its arguments are not valid.
func NewCommands(cfg Config, bus *cqrs.Bus, mapFn MapFunc) (*Commands, error) {
	err := cfg.Validate()
	if bus == nil {
		err = errors.Join(err, errors.New("consume: NewCommands: the bus is nil"))
	}
	if mapFn == nil {
		err = errors.Join(err, errors.New("consume: NewCommands: the mapping function is nil"))
	}
	if err != nil {
		return nil, err
	}
	return &Commands{core: newCore(cfg, KindCommands), bus: bus, mapFn: mapFn}, nil
}

// Run consumes until ctx ends, then commits what it dispatched and returns
// nil; or until a bad message stops it under PolicyStop, or a command
// without an ID, then returns a [*StalledError]. It fails at once when
// PostgreSQL or the brokers cannot be reached. Transient errors are
// retried with backoff and shown by [Status] meanwhile.
func (c *Commands) Run(ctx context.Context) error {
	cl, err := c.newClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := c.start(ctx, cl); err != nil {
		return stoppedEarly(ctx, err)
	}
	return c.loop(ctx, cl, func(ctx context.Context, fetches kgo.Fetches) error { return c.process(ctx, cl, fetches) })
}

// process dispatches the messages of a poll, partition by partition in
// offset order, then commits the offsets of those it is done with. On an
// error it rewinds the partitions it did not finish.
func (c *Commands) process(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
	// The message in flight when ctx ends may finish, within
	// ShutdownTimeout, so that its offset is committed too; no other
	// message starts.
	dctx, cancel := graceful(ctx, c.cfg.ShutdownTimeout)
	defer cancel()
	var done []*kgo.Record
	rejected, deadLettered := 0, 0
	parts := partitions(fetches)
	var failed error
	to := make(map[partitionKey]int64)
	for i, p := range parts {
		for j, rec := range p.Records {
			if ctx.Err() != nil {
				failed = ctx.Err()
				break
			}
			outcome, err := c.handle(dctx, cl, rec)
			if err != nil {
				failed = err
				to[partitionKey{p.Topic, p.Partition}] = p.Records[j].Offset
				for _, q := range parts[i+1:] {
					to[partitionKey{q.Topic, q.Partition}] = q.Records[0].Offset
				}
				break
			}
			switch outcome {
			case outcomeRejected:
				rejected++
			case outcomeDeadLettered:
				deadLettered++
			}
			done = append(done, rec)
		}
		if failed != nil {
			break
		}
	}
	// Commit what was dispatched, also when the poll ends with an error, so
	// that a retry or a restart dispatches less again. (Dispatching again
	// is harmless: the bus answers with the original result.)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ShutdownTimeout)
	defer cancel()
	if err := c.commitOffsets(cctx, cl, done, fetches); err != nil {
		if failed == nil {
			failed = err
			for _, p := range parts {
				to[partitionKey{p.Topic, p.Partition}] = p.Records[0].Offset
			}
		} else {
			c.log.WarnContext(ctx, "consume: offsets not committed", slog.Any("err", err))
		}
	}
	if err := c.status.count(cctx, c.cfg.Pool, rejected, deadLettered); err != nil {
		c.log.WarnContext(ctx, "consume: counts not recorded", slog.Any("err", err))
	}
	var stalled *StalledError
	if failed != nil && !errors.As(failed, &stalled) {
		rewind(cl, to)
	}
	return failed
}

// commitOffsets commits the offsets after done to Kafka, and records them
// in kafka_offsets for Status.
func (c *Commands) commitOffsets(ctx context.Context, cl *kgo.Client, done []*kgo.Record, fetches kgo.Fetches) error {
	if len(done) == 0 {
		return nil
	}
	if err := cl.CommitRecords(ctx, done...); err != nil {
		return fmt.Errorf("consume: commit the offsets of group %s: %w", c.cfg.Group, err)
	}
	next := make(map[partitionKey]int64)
	for _, r := range done {
		next[partitionKey{r.Topic, r.Partition}] = r.Offset + 1
	}
	high := make(map[partitionKey]int64)
	fetches.EachPartition(func(p kgo.FetchTopicPartition) { high[partitionKey{p.Topic, p.Partition}] = visibleEnd(p) })
	for k, off := range next {
		n := int64(0)
		for _, r := range done {
			if r.Topic == k.topic && r.Partition == k.partition {
				n++
			}
		}
		c.metrics.committed(ctx, k, n, off, high[k])
	}
	var topics []string
	var parts []int32
	var offsets, highs []int64
	for k, off := range next {
		topics, parts, offsets, highs = append(topics, k.topic), append(parts, k.partition), append(offsets, off), append(highs, high[k])
	}
	_, err := c.cfg.Pool.Exec(ctx, c.expand(`INSERT INTO {{schema}}.kafka_offsets AS o (consumer_group, topic, partition, next_offset, high_watermark)
		SELECT $1, t, p, n, h FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS u(t, p, n, h)
		ON CONFLICT (consumer_group, topic, partition) DO UPDATE
		SET next_offset = excluded.next_offset, high_watermark = excluded.high_watermark, updated_at = now()`),
		c.cfg.Group, topics, parts, offsets, highs)
	if err != nil {
		// Kafka holds the offsets; this copy is only shown.
		c.log.WarnContext(ctx, "consume: offsets not recorded for status", slog.Any("err", err))
	}
	return nil
}

type outcome uint8

const (
	outcomeApplied outcome = iota
	outcomeRejected
	outcomeDeadLettered
	outcomeSkipped // the message asks for no command
)

// handle maps and dispatches one record. An error is a [*StalledError] or
// a transient error.
func (c *Commands) handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) (o outcome, err error) {
	ctx, span := c.startMessage(ctx, rec)
	defer func() { endSpans(span, nil, err) }()
	msg, err := c.parse(rec)
	if err != nil {
		return outcomeDeadLettered, c.bad(ctx, cl, messageOf(rec, msg.Envelope, c.cfg.Group), err)
	}
	cmd, err := c.mapFn(ctx, msg)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return outcomeDeadLettered, c.bad(ctx, cl, msg, fmt.Errorf("map to a command: %w", err))
	}
	if cmd == nil {
		return outcomeSkipped, nil
	}
	if commandID(cmd) == "" {
		return 0, &StalledError{Group: c.cfg.Group, Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset,
			Err: &NotIdentifiedError{Command: cqrs.CommandName(cmd)}}
	}
	_, err = c.bus.Dispatch(ctx, cmd)
	switch {
	case err == nil:
		return outcomeApplied, nil
	case errors.Is(err, cqrs.ErrRejected), errors.Is(err, cqrs.ErrInvalidCommand),
		errors.Is(err, cqrs.ErrAggregateNotFound), errors.Is(err, cqrs.ErrAggregateExists):
		c.log.InfoContext(ctx, "consume: command rejected", slog.String("at", posOf(msg).String()),
			slog.String("command", cqrs.CommandName(cmd)), slog.Any("err", err))
		return outcomeRejected, nil
	case errors.Is(err, cqrs.ErrUnknownCommand), errors.Is(err, cqrs.ErrCommandIDReused), errors.Is(err, cqrs.ErrHandlerPanic),
		errors.Is(err, cqrs.ErrNilCommand):
		return outcomeDeadLettered, c.bad(ctx, cl, msg, fmt.Errorf("dispatch %s: %w", cqrs.CommandName(cmd), err))
	default:
		return 0, fmt.Errorf("consume: dispatch %s for the message at %s: %w", cqrs.CommandName(cmd), posOf(msg), err)
	}
}

// commandID returns cmd's ID when it implements [cqrs.Identified] with a
// value or a pointer receiver, as the bus sees it, and "" otherwise.
func commandID(cmd any) string {
	if c, ok := cmd.(cqrs.Identified); ok {
		return c.CommandID()
	}
	v := reflect.ValueOf(cmd)
	if !v.IsValid() {
		return ""
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	if c, ok := p.Interface().(cqrs.Identified); ok {
		return c.CommandID()
	}
	return ""
}

func posOf(m Message) Position {
	return Position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
}
