package kafkasink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
	"github.com/stratadev/strata/projections"
)

// producer is a projection's transactional producer and its Kafka
// checkpoint. mu is held for a whole batch.
type producer struct {
	mu     sync.Mutex
	name   string
	client *kgo.Client // nil until started
	// pos is the projection's checkpoint in Kafka, as of the last commit;
	// mirrored is where the keeper's checkpoint was last moved to.
	pos, mirrored es.Position
	// fenced is set once another producer fenced this one; the
	// projection is not started again until its lease is taken.
	fenced error
}

func (p *producer) close() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}

// checkpointValue is the value of a checkpoint record.
type checkpointValue struct {
	Position string `json:"position"`
}

// opts returns the options of every client the sink makes.
func (s *Sink) opts(more ...kgo.Opt) []kgo.Opt {
	o := []kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...)}
	o = append(o, s.cfg.ClientOptions...)
	return append(o, more...)
}

// start makes the projection's producer: it makes sure the topics exist,
// initializes the producer ID (which aborts a transaction an earlier
// producer of the projection left open, and fences that producer), and
// reads the projection's checkpoint from the checkpoint topic.
// With lenient set (a republish), a checkpoint missing from Kafka is not
// an error.
func (s *Sink) start(ctx context.Context, pr *producer, lenient bool) (err error) {
	tid := s.TransactionalID(pr.name)
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, &TimeoutError{Op: "start " + pr.name, After: s.cfg.Timeout})
	defer cancel()
	cl, err := kgo.NewClient(s.opts(
		kgo.TransactionalID(tid),
		kgo.TransactionTimeout(s.cfg.TransactionTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(s.cfg.Linger),
		kgo.RecordDeliveryTimeout(s.cfg.Timeout),
	)...)
	if err != nil {
		return fmt.Errorf("kafkasink: start %s: client: %w", pr.name, err)
	}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	if err := s.ensureTopics(ctx, kadm.NewClient(cl)); err != nil {
		return s.kafkaErr(ctx, pr.name, "start "+pr.name, err)
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return s.kafkaErr(ctx, pr.name, "start "+pr.name+": init producer "+tid, err)
	}
	pos, found, err := s.readCheckpoint(ctx, pr.name)
	if err != nil {
		return s.kafkaErr(ctx, pr.name, "start "+pr.name+": read checkpoint", err)
	}
	kcp, err := s.keeper.Checkpoint(ctx, pr.name)
	if err != nil {
		return fmt.Errorf("kafkasink: start %s: %w", pr.name, err)
	}
	if !found && kcp.Position != es.Start && !lenient {
		lost := &CheckpointLostError{Projection: pr.name, Topic: s.cfg.CheckpointTopic, Keeper: kcp.Position}
		f := projections.Failure{Position: kcp.Position, Error: lost.Error()}
		if err := s.keeper.SetState(ctx, pr.name, projections.StateStalled, &f); err != nil {
			return fmt.Errorf("kafkasink: start %s: %w", pr.name, err)
		}
		s.cfg.Logger.ErrorContext(ctx, "kafkasink: checkpoint lost; projection stalled", slog.String("projection", pr.name),
			slog.String("topic", s.cfg.CheckpointTopic), slog.String("keeper", kcp.Position.String()))
		return &projections.StalledError{Projection: pr.name, Failure: f}
	}
	pr.client, pr.pos, pr.mirrored = cl, pos, kcp.Position
	if kcp.Position != pos {
		s.cfg.Logger.InfoContext(ctx, "kafkasink: the keeper's checkpoint differs from Kafka's; Kafka's is right",
			slog.String("projection", pr.name), slog.String("kafka", pos.String()), slog.String("keeper", kcp.Position.String()))
		if err := s.mirror(ctx, pr, kcp.Position); err != nil {
			pr.client = nil
			return err
		}
	}
	s.cfg.Logger.InfoContext(ctx, "kafkasink: producer started", slog.String("projection", pr.name),
		slog.String("transactional_id", tid), slog.String("checkpoint", pos.String()))
	return nil
}

// kafkaErr classifies an error of Kafka met while doing op.
func (s *Sink) kafkaErr(ctx context.Context, name, op string, err error) error {
	var te *TimeoutError
	switch {
	case errors.As(context.Cause(ctx), &te) && ctx.Err() != nil:
		return te
	case fencedCause(err):
		return s.fencedError(name, err)
	case errors.Is(err, ErrTopic), errors.Is(err, context.Canceled):
		return err
	case refusedRecord(err):
		return fmt.Errorf("kafkasink: %s: %w", op, err) // not transient
	}
	return &transientError{fmt.Errorf("kafkasink: %s: %w", op, err)}
}

// ensureTopics makes sure the checkpoint topic and the configured topics
// exist, creating those it may.
func (s *Sink) ensureTopics(ctx context.Context, adm *kadm.Client) error {
	names := []string{s.cfg.CheckpointTopic}
	for _, t := range s.cfg.Topics {
		names = append(names, t.Name)
	}
	details, err := s.listTopics(ctx, adm, names)
	if err != nil {
		return err
	}
	var created []string
	for _, name := range names {
		d, ok := details[name]
		var terr error
		if ok {
			terr = d.Err
		}
		switch {
		case ok && terr == nil:
			continue
		case errors.Is(terr, kerr.TopicAuthorizationFailed):
			return &TopicError{Topic: name, Reason: "may not describe it (the principal needs Describe on it)", Err: terr}
		case terr != nil && !errors.Is(terr, kerr.UnknownTopicOrPartition):
			// A topic being created has no leader yet, say: retried.
			return fmt.Errorf("describe topic %s: %w", name, terr)
		}
		// Missing.
		var (
			partitions int32
			rf         int16
			configs    map[string]*string
		)
		if name == s.cfg.CheckpointTopic {
			compact := "compact"
			partitions, rf, configs = 1, s.cfg.CheckpointReplicationFactor, map[string]*string{"cleanup.policy": &compact}
		} else {
			if !s.cfg.CreateTopics {
				return &TopicError{Topic: name, Reason: "does not exist and Config.CreateTopics is false"}
			}
			t := s.topics[name]
			partitions, rf = t.Partitions, t.ReplicationFactor
		}
		res, err := adm.CreateTopic(ctx, partitions, rf, configs, name)
		if err == nil {
			err = res.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
				return &TopicError{Topic: name, Reason: "does not exist and may not be created (the principal needs Create)", Err: err}
			}
			return fmt.Errorf("create topic %s: %w", name, err)
		}
		s.cfg.Logger.InfoContext(ctx, "kafkasink: topic created", slog.String("topic", name),
			slog.Int("partitions", int(partitions)), slog.Int("replication_factor", int(rf)))
		created = append(created, name)
	}
	if len(created) > 0 {
		// Usable once the brokers know them.
		if _, err := s.listTopics(ctx, adm, created); err != nil {
			return err
		}
	}
	return nil
}

// listTopicsTries is how often listTopics asks again about topics that
// seem missing: a topic created a moment ago may not be in every broker's
// metadata yet.
const listTopicsTries = 5

// listTopics describes names, asking again, with backoff, for a moment
// while some of them seem missing.
func (s *Sink) listTopics(ctx context.Context, adm *kadm.Client, names []string) (kadm.TopicDetails, error) {
	for try := 0; ; try++ {
		details, err := adm.ListTopics(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("list topics: %w", err)
		}
		missing := false
		for _, n := range names {
			d, ok := details[n]
			missing = missing || !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)
		}
		if !missing || try == listTopicsTries-1 {
			return details, nil
		}
		if !(backoff.Backoff{Min: 50 * time.Millisecond, Max: time.Second}).Wait(ctx, try) {
			return nil, ctx.Err()
		}
	}
}

// readCheckpoint reads the checkpoint topic to its end, read_committed,
// and returns the last checkpoint of name, if any. Checkpoints are keyed by
// the projection's transactional ID, not its bare name, so that two
// deployments that share a cluster (and so the checkpoint topic) with
// projections of the same name keep apart, as their producers must. The producer's ID is
// initialized before, so no transaction of the projection is open.
func (s *Sink) readCheckpoint(ctx context.Context, name string) (es.Position, bool, error) {
	topic := s.cfg.CheckpointTopic
	key := s.TransactionalID(name)
	cl, err := kgo.NewClient(s.opts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (the markers that end transactions) say how far
		// the read got when the last records were aborted.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return es.Position{}, false, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return es.Position{}, false, fmt.Errorf("end offset of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok {
		return es.Position{}, false, fmt.Errorf("end offset of %s: no partition 0", topic)
	}
	if end.Err != nil {
		return es.Position{}, false, fmt.Errorf("end offset of %s: %w", topic, end.Err)
	}
	var (
		pos   es.Position
		found bool
		at    int64 = -1
	)
	for at < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return es.Position{}, false, err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = fmt.Errorf("read %s[%d]: %w", t, p, err)
		})
		if ferr != nil {
			return es.Position{}, false, ferr
		}
		for _, r := range fs.Records() {
			at = max(at, r.Offset)
			if r.Attrs.IsControl() || string(r.Key) != key {
				continue
			}
			if r.Value == nil { // a tombstone
				pos, found = es.Start, false
				continue
			}
			var v checkpointValue
			if err := json.Unmarshal(r.Value, &v); err != nil {
				return es.Position{}, false, fmt.Errorf("checkpoint of %s at %s[0]@%d: %w", name, topic, r.Offset, err)
			}
			p, err := es.ParsePosition(v.Position)
			if err != nil {
				return es.Position{}, false, fmt.Errorf("checkpoint of %s at %s[0]@%d: %w", name, topic, r.Offset, err)
			}
			pos, found = p, true
		}
	}
	return pos, found, nil
}

// publish runs one Kafka transaction: handle's messages (when handle is
// not nil and p has events) and the checkpoint record at p.To. On success
// pr.pos is p.To. On failure the transaction is aborted and the producer
// closed, so that the next batch starts a new one and reads the
// checkpoint again: a commit whose outcome is unknown may have committed.
func (s *Sink) publish(ctx context.Context, pr *producer, p projections.ApplyParams, handle func(context.Context, *Tx) error) (err error) {
	op := fmt.Sprintf("publish %s up to %s", pr.name, p.To)
	bctx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, &TimeoutError{Op: op, After: s.cfg.Timeout})
	defer cancel()
	cl := pr.client
	handlerFailed := false
	var tx *Tx
	defer func() {
		if err == nil {
			s.metrics.transaction(ctx, pr.name, "committed", tx.Published()-1) // not the checkpoint
			return
		}
		s.abort(ctx, pr, handlerFailed)
		outcome := "aborted"
		if errors.Is(err, ErrFenced) {
			outcome = "fenced"
		}
		s.metrics.transaction(ctx, pr.name, outcome, 0)
		if errors.Is(err, ErrFenced) {
			pr.fenced = err
			s.cfg.Logger.ErrorContext(ctx, "kafkasink: producer fenced: another worker publishes this projection; this one stops",
				slog.String("projection", pr.name), slog.String("transactional_id", s.TransactionalID(pr.name)), slog.Any("error", err))
		}
	}()
	if err := cl.BeginTransaction(); err != nil {
		return s.kafkaErr(bctx, pr.name, op+": begin transaction", err)
	}
	tx = &Tx{sink: s, client: cl, ctx: bctx}
	if handle != nil && len(p.Events) > 0 {
		if err := handle(bctx, tx); err != nil {
			if ferr := tx.failed(); ferr != nil && fencedCause(ferr) {
				return s.fencedError(pr.name, ferr)
			}
			handlerFailed = true
			return err
		}
	}
	v, _ := json.Marshal(checkpointValue{Position: p.To.String()})
	tx.produce(&kgo.Record{Topic: s.cfg.CheckpointTopic, Partition: 0, Key: []byte(s.TransactionalID(pr.name)), Value: v})
	if err := cl.Flush(bctx); err != nil {
		return s.kafkaErr(bctx, pr.name, op+": flush", err)
	}
	if err := tx.failed(); err != nil {
		return s.kafkaErr(bctx, pr.name, op+": produce", err)
	}
	if err := cl.EndTransaction(bctx, kgo.TryCommit); err != nil {
		return s.kafkaErr(bctx, pr.name, op+": commit", err)
	}
	pr.pos = p.To
	return nil
}

// abort ends a failed batch. When the handler failed (Kafka did not), it
// aborts the transaction and keeps the producer for the next batch.
// Otherwise, or when the abort fails, it closes the producer: the next
// batch starts a new one, whose start aborts the transaction if it is
// still open and reads the checkpoint again.
func (s *Sink) abort(ctx context.Context, pr *producer, handlerFailed bool) {
	if pr.client == nil {
		return
	}
	if handlerFailed {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		err := pr.client.AbortBufferedRecords(actx)
		if err == nil {
			err = pr.client.EndTransaction(actx, kgo.TryAbort)
		}
		if err == nil {
			return
		}
	}
	pr.close()
}
