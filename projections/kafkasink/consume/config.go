package consume

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/projections"
)

// Defaults for [Config].
const (
	SchemaDefault           = "strata"
	BatchSizeDefault        = 500
	MaxValueBytesDefault    = 1 << 20
	DeadLetterSuffixDefault = ".dlq"
	RetryMinDefault         = 100 * time.Millisecond
	RetryMaxDefault         = 10 * time.Second
	ShutdownTimeoutDefault  = 10 * time.Second
)

// Config configures a [ReadModel] or a [Commands] consumer. Brokers,
// Group, Topics and Pool have no default; everything else does.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// ClientOptions are added to the options of the Kafka client, for TLS,
	// SASL, timeouts and the like. The consumer sets the group, the topics,
	// read_committed isolation, manual commits and its rebalance callbacks
	// itself. Defaults to none.
	ClientOptions []kgo.Opt
	// Group is the consumer group, and the consumer's name: its status and
	// offsets are kept under it, and [Message.CommandID] derives IDs from
	// it. Required.
	Group string
	// Topics are consumed. Required.
	Topics []string
	// Pool is the PostgreSQL database that holds the consumer's state (and,
	// for a read model, its rows). Required.
	Pool *pgxpool.Pool
	// Schema holds the consumer's tables, kafka_consumers and
	// kafka_offsets. Defaults to SchemaDefault ("strata"), pgsink's.
	Schema string
	// ErrorPolicy says what happens to a bad message (see
	// [ErrBadMessage]): PolicyStop stops the consumer at it, PolicyDeadLetter
	// moves it to DeadLetterTopic and goes on. Defaults to PolicyStop.
	ErrorPolicy projections.ErrorPolicy
	// DeadLetterTopic receives bad messages under PolicyDeadLetter. It must
	// exist, and accept messages as large as the consumed topics do.
	// Defaults to Group + DeadLetterSuffixDefault (".dlq").
	DeadLetterTopic string
	// BatchSize caps the messages taken from Kafka at once. Defaults to
	// BatchSizeDefault (500).
	BatchSize int
	// MaxValueBytes is the largest value the consumer accepts; a larger
	// one is a bad message. Defaults to MaxValueBytesDefault (1 MiB).
	MaxValueBytes int
	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// between retries of transient errors. Default to RetryMinDefault
	// (100ms) and RetryMaxDefault (10s).
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds what Run still does after its context ends:
	// for commands, finishing the dispatch in flight and committing the
	// offsets of what was dispatched; for a read model, the commit of a
	// batch already written; for both, the last status write. (A read
	// model's batch still being written is rolled back at once: it
	// applies again from the stored offset.) Defaults to
	// ShutdownTimeoutDefault (10s).
	ShutdownTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the consumer spans, whose parents come from the
	// messages' traceparent headers (see the package documentation).
	// Defaults to the global provider, otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the consumer's metrics: messages consumed,
	// dead-lettered, and the lag of the group (see [MeterName]). Defaults
	// to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("consume: Config.Brokers is empty; want at least one host:port"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("consume: Config.Group is empty"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("consume: Config.Topics is empty"))
	}
	if c.Pool == nil {
		errs = append(errs, errors.New("consume: Config.Pool is nil"))
	}
	if c.ErrorPolicy > projections.PolicyDeadLetter {
		errs = append(errs, fmt.Errorf("consume: Config.ErrorPolicy %d is unknown", c.ErrorPolicy))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("consume: Config.BatchSize is %d; want 0 (default) or more", c.BatchSize))
	}
	if c.MaxValueBytes < 0 {
		errs = append(errs, fmt.Errorf("consume: Config.MaxValueBytes is %d; want 0 (default) or more", c.MaxValueBytes))
	}
	if c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("consume: Config.RetryMin (%v) and RetryMax (%v) must not be negative", c.RetryMin, c.RetryMax))
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("consume: Config.RetryMin (%v) is above RetryMax (%v)", c.RetryMin, c.RetryMax))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("consume: Config.ShutdownTimeout is %v; want 0 (default) or more", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.Schema = cmp.Or(c.Schema, SchemaDefault)
	c.DeadLetterTopic = cmp.Or(c.DeadLetterTopic, c.Group+DeadLetterSuffixDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.MaxValueBytes = cmp.Or(c.MaxValueBytes, MaxValueBytesDefault)
	c.RetryMin = cmp.Or(c.RetryMin, RetryMinDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, ShutdownTimeoutDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}
