package kafkasink

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Defaults for [Config].
const (
	SourceDefault                = "strata"
	CheckpointTopicDefault       = "strata.checkpoints"
	TransactionalIDPrefixDefault = "strata-"
	TransactionTimeoutDefault    = 60 * time.Second
	TimeoutDefault               = 30 * time.Second
	LingerDefault                = 5 * time.Millisecond
	BatchSizeDefault             = 5000
	// ReplicationFactorDefault leaves the replication factor of the
	// topics the sink creates to the broker (default.replication.factor).
	ReplicationFactorDefault int16 = -1
	// PartitionsDefault leaves the partition count of the topics the sink
	// creates to the broker (num.partitions).
	PartitionsDefault int32 = -1
)

// Topic is a topic a projection publishes to.
type Topic struct {
	Name string
	// Partitions and ReplicationFactor are used when the sink creates the
	// topic ([Config.CreateTopics]). Default to the broker's defaults
	// (num.partitions, default.replication.factor).
	Partitions        int32
	ReplicationFactor int16
}

// Config tunes a [Sink]. Only Brokers is required.
type Config struct {
	// Brokers are the bootstrap addresses of the Kafka cluster. Required.
	Brokers []string
	// ClientOptions are added to the options of every client the sink
	// makes: TLS (kgo.DialTLSConfig), SASL (kgo.SASL), a client ID. The
	// sink sets the seed brokers, the transactional ID and the producer's
	// delivery settings itself. Defaults to none.
	ClientOptions []kgo.Opt
	// Source is the ce_source header of every message. Defaults to
	// "strata".
	Source string
	// CheckpointTopic holds the checkpoints, one record per batch keyed by
	// the projection's transactional ID. The sink creates it when it is missing, with
	// one partition, cleanup.policy=compact and
	// CheckpointReplicationFactor replicas. Defaults to
	// "strata.checkpoints".
	CheckpointTopic string
	// CheckpointReplicationFactor is the replication factor of the
	// checkpoint topic when the sink creates it. Defaults to the broker's
	// default.replication.factor; use 3 on a production cluster.
	CheckpointReplicationFactor int16
	// TransactionalIDPrefix is prepended to the projection's name to make
	// its producer's transactional ID, so that the broker fences an
	// earlier producer of the same projection; it also keys the
	// projection's checkpoint. Deployments that share a cluster need
	// prefixes of their own (e.g. "orders-prod-"). Defaults to "strata-".
	TransactionalIDPrefix string
	// Topics are the topics the projections publish to. A handler may
	// publish to these only. Defaults to none.
	Topics []Topic
	// CreateTopics creates the missing Topics with their Partitions and
	// ReplicationFactor when a projection starts. When false, a missing
	// topic fails the start with a [*TopicError] that names it. Defaults
	// to false.
	CreateTopics bool
	// TransactionTimeout is the broker's bound on one transaction: a
	// transaction left open longer, by a producer that died, is aborted
	// by the broker. Defaults to 60s.
	TransactionTimeout time.Duration
	// Timeout bounds the sink's work for one batch (produce, commit) and
	// for a start (producer ID, topics, checkpoint). A batch that runs out
	// of it fails with a transient [ErrTimeout], which the worker retries
	// from the checkpoint. Keep it below TransactionTimeout. Defaults to
	// 30s.
	Timeout time.Duration
	// Linger is how long the producer waits for more records of a
	// partition before it sends a batch; the end of a batch sends at once.
	// Defaults to 5ms.
	Linger time.Duration
	// BatchSize is the batch size the sink advises a worker whose
	// projections.Config.BatchSize is 0 to take (see [Sink.BatchSize]):
	// events per transaction. Defaults to 5000: in BenchmarkPublish,
	// batches of 5000 published about twice as many events per second as
	// batches of 500 (docs/benchmarks.md).
	BatchSize int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MeterProvider makes the sink's metrics: transactions by outcome
	// (committed, aborted, fenced) and messages published, by projection
	// (see [MeterName]). Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafkasink: Config.Brokers is empty; want the bootstrap addresses of the cluster"))
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, fmt.Errorf("kafkasink: Config.Brokers[%d] is empty", i))
		}
	}
	if c.CheckpointReplicationFactor < -1 {
		errs = append(errs, fmt.Errorf("kafkasink: Config.CheckpointReplicationFactor is %d; want -1 or 0 (default) or more", c.CheckpointReplicationFactor))
	}
	seen := make(map[string]bool)
	for i, t := range c.Topics {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("kafkasink: Config.Topics[%d] has no name", i))
		case seen[t.Name]:
			errs = append(errs, fmt.Errorf("kafkasink: Config.Topics[%d]: topic %q is listed twice", i, t.Name))
		case t.Name == cmp.Or(c.CheckpointTopic, CheckpointTopicDefault):
			errs = append(errs, fmt.Errorf("kafkasink: Config.Topics[%d]: topic %q is the checkpoint topic", i, t.Name))
		}
		seen[t.Name] = true
		if t.Partitions < -1 || t.ReplicationFactor < -1 {
			errs = append(errs, fmt.Errorf("kafkasink: Config.Topics[%d] (%q): Partitions %d and ReplicationFactor %d must be -1, 0 (default) or more",
				i, t.Name, t.Partitions, t.ReplicationFactor))
		}
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("kafkasink: Config.BatchSize is %d; want 0 (default) or more", c.BatchSize))
	}
	if c.TransactionTimeout < 0 || c.Timeout < 0 || c.Linger < 0 {
		errs = append(errs, fmt.Errorf("kafkasink: Config.TransactionTimeout (%v), Timeout (%v) and Linger (%v) must not be negative",
			c.TransactionTimeout, c.Timeout, c.Linger))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.Source = cmp.Or(c.Source, SourceDefault)
	c.CheckpointTopic = cmp.Or(c.CheckpointTopic, CheckpointTopicDefault)
	c.CheckpointReplicationFactor = cmp.Or(c.CheckpointReplicationFactor, ReplicationFactorDefault)
	c.TransactionalIDPrefix = cmp.Or(c.TransactionalIDPrefix, TransactionalIDPrefixDefault)
	c.TransactionTimeout = cmp.Or(c.TransactionTimeout, TransactionTimeoutDefault)
	c.Timeout = cmp.Or(c.Timeout, TimeoutDefault)
	c.Linger = cmp.Or(c.Linger, LingerDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	topics := make([]Topic, len(c.Topics))
	for i, t := range c.Topics {
		t.Partitions = cmp.Or(t.Partitions, PartitionsDefault)
		t.ReplicationFactor = cmp.Or(t.ReplicationFactor, ReplicationFactorDefault)
		topics[i] = t
	}
	c.Topics = topics
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}
