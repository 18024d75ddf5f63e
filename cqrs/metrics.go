package cqrs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/es"
)

// MeterName is the instrumentation scope of the metrics [Metrics] records.
const MeterName = "github.com/stratadev/strata/cqrs"

// Attribute keys of the command metrics.
const (
	// AttrCommandType is the command's name, as [CommandName] returns it.
	AttrCommandType = attribute.Key("strata.command.type")
	// AttrOutcome is how a dispatch ended: one of the Outcome constants.
	AttrOutcome = attribute.Key("strata.outcome")
)

// Outcomes of a dispatch, the values of [AttrOutcome].
const (
	OutcomeOK             = "ok"              // handled
	OutcomeInvalid        = "invalid"         // a [*ValidationError]
	OutcomeRejected       = "rejected"        // a [*RejectedError]: the aggregate refused it
	OutcomeConflict       = "conflict"        // a [*ConflictError]: out of attempts
	OutcomeExists         = "exists"          // an [*AggregateExistsError]
	OutcomeNotFound       = "not_found"       // an [*AggregateNotFoundError]
	OutcomeIDReused       = "id_reused"       // a [*CommandIDReusedError]
	OutcomeUnknownOutcome = "unknown_outcome" // an error wrapping [es.ErrUnknownOutcome]
	OutcomePanic          = "panic"           // a [*PanicError]
	OutcomeCanceled       = "canceled"        // the context ended
	OutcomeError          = "error"           // any other error
)

// Outcome returns the outcome a dispatch that returned err is counted
// under: one of the Outcome constants.
func Outcome(err error) string {
	var (
		panicked *PanicError
		invalid  *ValidationError
		rejected *RejectedError
		conflict *ConflictError
		exists   *AggregateExistsError
		notFound *AggregateNotFoundError
		reused   *CommandIDReusedError
	)
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, &panicked):
		return OutcomePanic
	case errors.As(err, &invalid):
		return OutcomeInvalid
	case errors.As(err, &rejected):
		return OutcomeRejected
	case errors.As(err, &conflict):
		return OutcomeConflict
	case errors.As(err, &exists):
		return OutcomeExists
	case errors.As(err, &notFound):
		return OutcomeNotFound
	case errors.As(err, &reused):
		return OutcomeIDReused
	case errors.Is(err, es.ErrUnknownOutcome):
		return OutcomeUnknownOutcome
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// MetricsConfig tunes [Metrics]. The zero value works.
type MetricsConfig struct {
	// MeterProvider makes the instruments. Defaults to the global
	// provider, otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Metrics returns a middleware that measures every command, with its
// name ([AttrCommandType]) as an attribute:
//
//   - strata.command.dispatched ({command}): dispatches, by outcome
//     ([AttrOutcome]; rejections, conflicts and panics are outcomes);
//   - strata.command.duration (s): how long they took, by outcome;
//   - strata.command.conflict_retries ({retry}): how often a handler made
//     with [Aggregate] loaded, decided and appended a command again
//     because a concurrent write to its stream came first.
//
// Add it first, so that it measures the other middleware too.
func Metrics(cfg MetricsConfig) Middleware {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(MeterName)
	dispatched, err := m.Int64Counter("strata.command.dispatched", metric.WithUnit("{command}"),
		metric.WithDescription("Commands dispatched, by type and outcome."))
	handle(err)
	duration, err := m.Float64Histogram("strata.command.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to handle a command, retries included, by type and outcome."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	handle(err)
	retries, err := m.Int64Counter("strata.command.conflict_retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Commands decided and appended again after a version conflict, by type."))
	handle(err)
	var attrs attrCache
	return func(next Next) Next {
		return func(ctx context.Context, cmd any) (Result, error) {
			start := time.Now()
			var n atomic.Int64
			res, err := next(context.WithValue(ctx, retriesKey{}, &n), cmd)
			name := CommandName(cmd)
			both := attrs.of(name, Outcome(err))
			dispatched.Add(ctx, 1, both)
			duration.Record(ctx, time.Since(start).Seconds(), both)
			if r := n.Load(); r > 0 {
				retries.Add(ctx, r, attrs.of(name, ""))
			}
			return res, err
		}
	}
}

// attrCache holds the attribute sets of the command types and outcomes
// seen, so that measuring a command builds none: there are as many as
// command types times outcomes.
type attrCache struct{ m sync.Map }

type attrKey struct{ command, outcome string }

// of returns the attributes of command and outcome; no outcome attribute
// when outcome is "".
func (c *attrCache) of(command, outcome string) metric.MeasurementOption {
	k := attrKey{command, outcome}
	if v, ok := c.m.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	kvs := []attribute.KeyValue{AttrCommandType.String(command)}
	if outcome != "" {
		kvs = append(kvs, AttrOutcome.String(outcome))
	}
	v, _ := c.m.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(kvs...)))
	return v.(metric.MeasurementOption)
}

type retriesKey struct{}

// conflictRetried counts a retry after a version conflict for the
// [Metrics] middleware of the dispatch ctx belongs to, if any.
func conflictRetried(ctx context.Context) {
	if n, ok := ctx.Value(retriesKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop commands.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
