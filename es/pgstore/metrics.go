package pgstore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/es"
)

// MeterName is the instrumentation scope of the store's metrics.
const MeterName = "github.com/stratadev/strata/es/pgstore"

// Attribute keys of the store's metrics.
const (
	// AttrOutcome is how an append ended: one of the Outcome constants.
	AttrOutcome = attribute.Key("strata.outcome")
	// AttrRead is what a read page read: "all" (the global log, which
	// subscriptions read too) or "stream".
	AttrRead = attribute.Key("strata.read")
)

// Outcomes of an append, the values of [AttrOutcome].
const (
	OutcomeAppended       = "appended"        // the events were stored
	OutcomeIdempotent     = "idempotent"      // the same IDs were stored already at that place: nothing written
	OutcomeConflict       = "conflict"        // an [*es.VersionConflictError]
	OutcomeDuplicate      = "duplicate"       // an [*es.DuplicateEventIDError]
	OutcomeInvalid        = "invalid"         // an [*es.InvalidEventError]
	OutcomeUnknownOutcome = "unknown_outcome" // an [*es.UnknownOutcomeError]
	OutcomeError          = "error"           // any other error
)

// storeMetrics are the store's instruments.
type storeMetrics struct {
	appends        metric.Int64Counter
	appendEvents   metric.Int64Histogram
	appendDuration metric.Float64Histogram
	reads          metric.Int64Counter
	readEvents     metric.Int64Counter
	subPages       metric.Int64Counter
	heldBack       metric.Float64Counter

	outcomes map[string]metric.MeasurementOption
	readAll  metric.MeasurementOption
	readOne  metric.MeasurementOption
}

func newStoreMetrics(mp metric.MeterProvider) *storeMetrics {
	m := mp.Meter(MeterName)
	sm := &storeMetrics{
		outcomes: map[string]metric.MeasurementOption{},
		readAll:  metric.WithAttributeSet(attribute.NewSet(AttrRead.String("all"))),
		readOne:  metric.WithAttributeSet(attribute.NewSet(AttrRead.String("stream"))),
	}
	for _, o := range []string{OutcomeAppended, OutcomeIdempotent, OutcomeConflict, OutcomeDuplicate, OutcomeInvalid, OutcomeUnknownOutcome, OutcomeError} {
		sm.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(AttrOutcome.String(o)))
	}
	var err error
	sm.appends, err = m.Int64Counter("strata.store.appends", metric.WithUnit("{append}"),
		metric.WithDescription("Appends to the event store, by outcome."))
	handle(err)
	sm.appendEvents, err = m.Int64Histogram("strata.store.append.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events per append that stored events."),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
	handle(err)
	sm.appendDuration, err = m.Float64Histogram("strata.store.append.duration", metric.WithUnit("s"),
		metric.WithDescription("Time an append took, the wait for a group commit included, by outcome."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	handle(err)
	sm.reads, err = m.Int64Counter("strata.store.reads", metric.WithUnit("{page}"),
		metric.WithDescription("Pages read from the event store: of the global log (subscriptions included) or of one stream."))
	handle(err)
	sm.readEvents, err = m.Int64Counter("strata.store.read.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events read from the event store."))
	handle(err)
	sm.subPages, err = m.Int64Counter("strata.store.subscription.pages", metric.WithUnit("{page}"),
		metric.WithDescription("Pages of events subscriptions handed to their consumers."))
	handle(err)
	sm.heldBack, err = m.Float64Counter("strata.store.subscription.held_back", metric.WithUnit("s"),
		metric.WithDescription("Time subscriptions waited because appends were in flight or a running transaction held readers back."))
	handle(err)
	return sm
}

// appended records an append of n events that started at start and
// returned err; stored says the events were stored already (an
// idempotent retry).
func (sm *storeMetrics) appended(ctx context.Context, n int, start time.Time, stored bool, err error) {
	o := appendOutcome(err)
	if o == OutcomeAppended && stored {
		o = OutcomeIdempotent
	}
	opt := sm.outcomes[o]
	sm.appends.Add(ctx, 1, opt)
	sm.appendDuration.Record(ctx, time.Since(start).Seconds(), opt)
	if o == OutcomeAppended {
		sm.appendEvents.Record(ctx, int64(n))
	}
}

func appendOutcome(err error) string {
	var (
		conflict *es.VersionConflictError
		dup      *es.DuplicateEventIDError
		invalid  *es.InvalidEventError
	)
	switch {
	case err == nil:
		return OutcomeAppended
	case errors.As(err, &conflict):
		return OutcomeConflict
	case errors.As(err, &dup):
		return OutcomeDuplicate
	case errors.As(err, &invalid):
		return OutcomeInvalid
	case errors.Is(err, es.ErrUnknownOutcome):
		return OutcomeUnknownOutcome
	}
	return OutcomeError
}

// read records a page of n events read from the global log (all) or a
// stream.
func (sm *storeMetrics) read(ctx context.Context, all bool, n int) {
	opt := sm.readOne
	if all {
		opt = sm.readAll
	}
	sm.reads.Add(ctx, 1, opt)
	if n > 0 {
		sm.readEvents.Add(ctx, int64(n), opt)
	}
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop appends.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
