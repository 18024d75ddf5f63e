package projections

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ErrorPolicy says what a worker does with an event its projection cannot
// handle: a declared type that does not decode, or a handler error that is
// not transient.
type ErrorPolicy uint8

const (
	// PolicyStop stops the projection, marked [StateStalled] at the event,
	// until an operator resumes it. It is the default.
	PolicyStop ErrorPolicy = iota
	// PolicyDeadLetter parks the event as a [DeadLetter] and continues.
	PolicyDeadLetter
)

// String returns "stop" or "dead-letter", the words the CLI's --on-error
// takes.
func (p ErrorPolicy) String() string {
	switch p {
	case PolicyStop:
		return "stop"
	case PolicyDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("ErrorPolicy(%d)", uint8(p))
}

// MarshalText implements [encoding.TextMarshaler] with [ErrorPolicy.String].
func (p ErrorPolicy) MarshalText() ([]byte, error) {
	if p > PolicyDeadLetter {
		return nil, fmt.Errorf("projections: error policy %d is unknown", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]: it takes "stop" or
// "dead-letter", so that a policy can come from a flag, an environment
// variable or a configuration file.
func (p *ErrorPolicy) UnmarshalText(b []byte) error {
	switch string(b) {
	case "stop":
		*p = PolicyStop
	case "dead-letter":
		*p = PolicyDeadLetter
	default:
		return fmt.Errorf("projections: error policy %q is unknown: want stop or dead-letter", b)
	}
	return nil
}

// Defaults for [Config].
const (
	BatchSizeDefault       = 500
	BatchWaitDefault       = 20 * time.Millisecond
	RetryMinDefault        = 100 * time.Millisecond
	RetryMaxDefault        = 10 * time.Second
	PollIntervalDefault    = time.Second
	ShutdownTimeoutDefault = 10 * time.Second
)

// Config tunes a [Worker]. The zero value works.
type Config struct {
	// BatchSize caps the events of one batch. Defaults to what the sink
	// advises when it is a [BatchSizer], and to 500 otherwise.
	BatchSize int
	// BatchWait is how long a worker that has fewer than BatchSize events
	// waits for more before applying them. Negative means not at all.
	// Defaults to 20ms.
	BatchWait time.Duration
	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// between retries of transient errors. Default to 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// PollInterval is how often a worker looks again when no signal tells
	// it something changed: a standby worker tries to take the lease when
	// the sink is a [Locker], a paused worker looks whether it may go on,
	// and an idle worker reads its checkpoint in case it was moved (a
	// [CheckpointWatcher] sink wakes it sooner). Defaults to 1s.
	PollInterval time.Duration
	// ShutdownTimeout bounds how long the batch in flight may take to finish
	// after Run's context ends; then it is rolled back. Defaults to 10s.
	ShutdownTimeout time.Duration
	// ErrorPolicy defaults to PolicyStop.
	ErrorPolicy ErrorPolicy
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the span of each batch, which the handler's ctx
	// carries (see [Worker.Run]). Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the worker's metrics (see [MeterName] and
	// docs/observability.md): events applied, batches and their duration,
	// retries, dead letters, lag and state, with the projection's name as
	// an attribute. Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// BatchSizer is implemented by sinks that know what batch size makes them
// fast: an Elasticsearch sink, say, whose batches should fill its bulk
// requests. A worker asks only when its Config.BatchSize is 0; a size the
// user sets always wins.
type BatchSizer interface {
	// BatchSize returns the events per batch the sink advises; 0 or less
	// means no advice (BatchSizeDefault).
	BatchSize() int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("projections: Config.BatchSize is %d; want 0 (default) or more", c.BatchSize))
	}
	if c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("projections: Config.RetryMin (%v) and RetryMax (%v) must not be negative", c.RetryMin, c.RetryMax))
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("projections: Config.RetryMin (%v) is above RetryMax (%v)", c.RetryMin, c.RetryMax))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("projections: Config.PollInterval is %v; want 0 (default) or more", c.PollInterval))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("projections: Config.ShutdownTimeout is %v; want 0 (default) or more", c.ShutdownTimeout))
	}
	if c.ErrorPolicy > PolicyDeadLetter {
		errs = append(errs, fmt.Errorf("projections: Config.ErrorPolicy %d is unknown", c.ErrorPolicy))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.BatchWait = cmp.Or(c.BatchWait, BatchWaitDefault)
	c.RetryMin = cmp.Or(c.RetryMin, RetryMinDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
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
