package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Sink publishes projections' integration events to Kafka. It is a
// [projections.Sink] whose handlers get a [*Tx]; the state of its
// projections other than the Kafka checkpoint is its [Keeper]'s, so it is
// also a [projections.Locker], a [projections.RetryRecorder] and a
// [projections.CheckpointWatcher].
//
// Each projection has a transactional producer of its own, made when the
// projection starts (its first batch, or the first read of its checkpoint
// by a worker made with [NewWorker]) and closed when its lease is
// released, or by [Sink.Close].
type Sink struct {
	keeper  Keeper
	cfg     Config
	topics  map[string]Topic
	metrics *sinkMetrics

	mu    sync.Mutex
	projs map[string]*producer
}

var (
	_ projections.Sink[*Tx]         = (*Sink)(nil)
	_ projections.Locker            = (*Sink)(nil)
	_ projections.RetryRecorder     = (*Sink)(nil)
	_ projections.CheckpointWatcher = (*Sink)(nil)
)

// New returns a sink that publishes to the cluster cfg names and keeps
// its projections' state with keeper, a *pgsink.Sink say, which the
// caller owns. New does no I/O. It panics if cfg is invalid (see
// [Config.Validate]) or keeper is nil.
func New(keeper Keeper, cfg Config) *Sink {
	if keeper == nil {
		panic("kafkasink: New: nil keeper")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	topics := make(map[string]Topic, len(cfg.Topics))
	for _, t := range cfg.Topics {
		topics[t.Name] = t
	}
	return &Sink{keeper: keeper, cfg: cfg, topics: topics, projs: make(map[string]*producer), metrics: newSinkMetrics(cfg.MeterProvider)}
}

var _ projections.BatchSizer = (*Sink)(nil)

// BatchSize implements [projections.BatchSizer]: [Config.BatchSize]
// events, one Kafka transaction per batch. A worker whose
// projections.Config.BatchSize is 0 takes it.
func (s *Sink) BatchSize() int { return s.cfg.BatchSize }

// Keeper returns the [Keeper] passed to [New].
func (s *Sink) Keeper() Keeper { return s.keeper }

// TransactionalID returns the transactional ID of a projection's producer.
func (s *Sink) TransactionalID(projection string) string {
	return s.cfg.TransactionalIDPrefix + projection
}

// slot returns the projection's producer slot, locked.
func (s *Sink) slot(name string) *producer {
	s.mu.Lock()
	p, ok := s.projs[name]
	if !ok {
		p = &producer{name: name}
		s.projs[name] = p
	}
	s.mu.Unlock()
	p.mu.Lock()
	return p
}

// started returns the projection's producer, locked and started.
func (s *Sink) started(ctx context.Context, name string) (*producer, error) {
	p := s.slot(name)
	if p.fenced != nil {
		return p, p.fenced
	}
	if p.client != nil {
		return p, nil
	}
	if err := s.start(ctx, p, false); err != nil {
		return p, err
	}
	return p, nil
}

// Apply implements [projections.Sink]: it publishes the batch's messages
// and the projection's checkpoint at p.To in one Kafka transaction. In
// order:
//
//  1. When the projection has no producer yet, it starts one, which
//     aborts an open transaction of an earlier producer of the
//     projection, and reads the projection's checkpoint from the
//     checkpoint topic (read_committed).
//  2. It checks the Kafka checkpoint is at p.From (else a
//     [*projections.CheckpointMovedError]) and, in the [Keeper], that
//     the projection is not paused (else [projections.ErrPaused]); in
//     the same keeper transaction it stores p.DeadLetters, so that they
//     are kept before the checkpoint moves past them. Dead letters
//     stored by an attempt whose transaction did not commit are not
//     stored twice.
//  3. It begins a transaction, runs handle, produces the checkpoint
//     record and commits.
//  4. It moves the keeper's checkpoint to p.To, where status and
//     [projections.WaitFor] see it.
//
// A failure before the commit aborts the transaction: a read_committed
// consumer sees none of its messages. A failure whose outcome is unknown
// closes the producer; the next batch starts a new one and reads the
// checkpoint again, and finds out. A fenced producer returns a
// [*FencedError], and the projection is not marked stalled.
func (s *Sink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	pr, err := s.started(ctx, p.Projection)
	defer pr.mu.Unlock()
	if err != nil {
		return err
	}
	if pr.pos != p.From {
		if err := s.mirror(ctx, pr, p.From); err != nil {
			return err
		}
		return &projections.CheckpointMovedError{Projection: p.Projection, Expected: p.From, Actual: pr.pos}
	}
	if err := s.check(ctx, pr, p); err != nil {
		return err
	}
	if err := s.publish(ctx, pr, p, handle); err != nil {
		return err
	}
	return s.mirror(ctx, pr, p.From)
}

// check checks, in the keeper, that the projection is not paused, and
// stores the batch's dead letters.
func (s *Sink) check(ctx context.Context, pr *producer, p projections.ApplyParams) error {
	if len(p.DeadLetters) == 0 {
		cp, err := s.keeper.Checkpoint(ctx, p.Projection)
		if err != nil {
			return fmt.Errorf("kafkasink: apply to %s: %w", p.Projection, err)
		}
		if cp.State == projections.StatePaused {
			return fmt.Errorf("kafkasink: apply to %s: %w", p.Projection, projections.ErrPaused)
		}
		return nil
	}
	return s.keeperApply(ctx, projections.ApplyParams{Projection: p.Projection, From: p.From, To: p.From, DeadLetters: p.DeadLetters})
}

// keeperApply runs p (no events) through the keeper. When the keeper's
// checkpoint is not at p.From, Kafka's is right: the keeper's is moved
// there first.
func (s *Sink) keeperApply(ctx context.Context, p projections.ApplyParams) error {
	nop := func(context.Context, pgx.Tx) error { return nil }
	err := s.keeper.ApplyTx(ctx, p, nop)
	if errors.Is(err, projections.ErrCheckpointMoved) {
		if err = s.keeper.Reset(ctx, p.Projection, p.From); err == nil {
			err = s.keeper.ApplyTx(ctx, p, nop)
		}
	}
	if err != nil && !errors.Is(err, projections.ErrPaused) {
		return fmt.Errorf("kafkasink: apply to %s: keeper: %w", p.Projection, err)
	}
	return err
}

// mirror moves the keeper's checkpoint from from to Kafka's, pr.pos.
func (s *Sink) mirror(ctx context.Context, pr *producer, from es.Position) error {
	if pr.mirrored == pr.pos {
		return nil
	}
	err := s.keeperApply(ctx, projections.ApplyParams{Projection: pr.name, From: from, To: pr.pos})
	if errors.Is(err, projections.ErrPaused) {
		// Paused after the batch committed in Kafka: the checkpoint
		// moves all the same.
		err = s.keeper.Reset(ctx, pr.name, pr.pos)
	}
	if err != nil {
		return fmt.Errorf("kafkasink: %s: copy the checkpoint %s to the keeper: %w", pr.name, pr.pos, err)
	}
	pr.mirrored = pr.pos
	return nil
}

// Checkpoint implements [projections.Checkpoints]: the keeper's
// checkpoint, whose position is the Kafka checkpoint when this sink has
// started the projection (see [NewWorker]). It does not start the
// projection itself, so that reading it from a process that does not
// publish (status, [projections.WaitFor]) fences no one.
func (s *Sink) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	pr := s.slot(name)
	defer pr.mu.Unlock()
	return s.checkpoint(ctx, pr)
}

func (s *Sink) checkpoint(ctx context.Context, pr *producer) (projections.Checkpoint, error) {
	cp, err := s.keeper.Checkpoint(ctx, pr.name)
	if err != nil || pr.client == nil || pr.fenced != nil {
		return cp, err
	}
	if cp.Position != pr.pos {
		pr.mirrored = cp.Position
		if err := s.mirror(ctx, pr, cp.Position); err != nil {
			return cp, err
		}
		cp.Position = pr.pos
	}
	return cp, nil
}

// SetState implements [projections.Checkpoints] through the [Keeper].
func (s *Sink) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	return s.keeper.SetState(ctx, name, state, f)
}

// SetRetrying implements [projections.RetryRecorder] through the
// [Keeper], so that status shows a projection whose worker retries a
// Kafka failure as retrying, with the error.
func (s *Sink) SetRetrying(ctx context.Context, name string, f *projections.Failure) error {
	return s.keeper.SetRetrying(ctx, name, f)
}

// WatchCheckpoint implements [projections.CheckpointWatcher] through the
// [Keeper], whose checkpoint follows Kafka's.
func (s *Sink) WatchCheckpoint(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	return s.keeper.WatchCheckpoint(ctx, name)
}

// Transient implements [projections.Sink]: [IsTransient], or the
// [Keeper]'s Transient, except for a fenced producer.
func (s *Sink) Transient(err error) bool {
	if errors.Is(err, ErrFenced) {
		return false
	}
	return IsTransient(err) || s.keeper.Transient(err)
}

// TryLock implements [projections.Locker] with the [Keeper]'s leases. A
// lease taken starts the projection afresh at its next batch: a new
// producer, the checkpoint read again from Kafka. Releasing the lease
// closes the producer.
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	l, got, err := s.keeper.TryLock(ctx, name)
	if err != nil || !got {
		return l, got, err
	}
	s.drop(name)
	return &lease{Lease: l, sink: s, name: name}, true, nil
}

type lease struct {
	projections.Lease
	sink *Sink
	name string
	once sync.Once
}

func (l *lease) Release(ctx context.Context) error {
	l.once.Do(func() { l.sink.drop(l.name) })
	return l.Lease.Release(ctx)
}

// drop closes the projection's producer, if any, and forgets its state.
func (s *Sink) drop(name string) {
	pr := s.slot(name)
	defer pr.mu.Unlock()
	pr.close()
	pr.fenced = nil
}

// Close closes the producers of every projection. Batches applied after
// Close start new ones.
func (s *Sink) Close() {
	s.mu.Lock()
	names := make([]string, 0, len(s.projs))
	for n := range s.projs {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.drop(n)
	}
}

// Republish moves the checkpoint of a projection to from, in Kafka (a
// transaction with only a checkpoint record) and in the [Keeper]: its
// worker then publishes the events after from again. Consumers see those
// messages again, with the same ce_id, and must be idempotent. It is the
// only way the sink publishes an event twice. It takes the projection's
// lease, and fails with [ErrLeaseHeld] when a worker holds it: stop the
// projection's workers first.
func (s *Sink) Republish(ctx context.Context, name string, from es.Position) error {
	l, got, err := s.TryLock(ctx, name)
	if err != nil {
		return fmt.Errorf("kafkasink: republish %s from %s: %w", name, from, err)
	}
	if !got {
		return fmt.Errorf("kafkasink: republish %s from %s: %w: stop its workers first", name, from, ErrLeaseHeld)
	}
	defer l.Release(context.WithoutCancel(ctx))
	pr := s.slot(name)
	defer pr.mu.Unlock()
	// Lenient: a republish is how a lost checkpoint is mended.
	if err := s.start(ctx, pr, true); err != nil {
		return fmt.Errorf("kafkasink: republish %s from %s: %w", name, from, err)
	}
	cur := pr.pos
	if err := s.publish(ctx, pr, projections.ApplyParams{Projection: name, From: cur, To: from}, nil); err != nil {
		return fmt.Errorf("kafkasink: republish %s from %s: %w", name, from, err)
	}
	if err := s.keeper.Reset(ctx, name, from); err != nil {
		return fmt.Errorf("kafkasink: republish %s from %s: %w", name, from, err)
	}
	pr.mirrored = from
	s.cfg.Logger.InfoContext(ctx, "kafkasink: checkpoint moved for a republish", slog.String("projection", name),
		slog.String("from", cur.String()), slog.String("to", from.String()))
	return nil
}

// fenced turns err into a *FencedError when Kafka says the producer was
// fenced.
func (s *Sink) fencedError(name string, err error) error {
	return &FencedError{Projection: name, TransactionalID: s.TransactionalID(name), Err: err}
}
