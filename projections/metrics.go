package projections

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/es"
)

// MeterName is the instrumentation scope of the worker's metrics.
const MeterName = "github.com/stratadev/strata/projections"

// Attribute keys of the metrics of strata's packages.
const (
	// AttrProjection names the projection (or the rebuild of one, which
	// runs under the name + [RebuildSuffix]).
	AttrProjection = attribute.Key("strata.projection")
	// AttrState is a worker's state: a [WorkerState], or [StateRebuilding]
	// for a rebuild's worker (one whose name ends in [RebuildSuffix]) that
	// is running.
	AttrState = attribute.Key("strata.projection.state")
)

// metricStates are the states the state gauge reports, one series each.
var metricStates = []string{
	string(WorkerStarting), string(WorkerRunning), string(StateRebuilding), string(WorkerStandby),
	string(WorkerPaused), string(WorkerStalled), string(WorkerRetrying), string(WorkerStopped),
}

// workerMetrics are a worker's instruments. The observable ones read what
// the worker tracks in memory: a scrape costs no query unless the worker
// is more than a page behind (see lag).
type workerMetrics struct {
	applied     metric.Int64Counter
	batches     metric.Int64Counter
	duration    metric.Float64Histogram
	retries     metric.Int64Counter
	deadLetters metric.Int64Counter
	attrs       metric.MeasurementOption
	set         attribute.Set

	read progress
}

func newWorkerMetrics[Tx any](mp metric.MeterProvider, w *Worker[Tx]) *workerMetrics {
	m := mp.Meter(MeterName)
	wm := &workerMetrics{set: attribute.NewSet(AttrProjection.String(w.name))}
	wm.attrs = metric.WithAttributeSet(wm.set)
	var err error
	wm.applied, err = m.Int64Counter("strata.projection.events.applied", metric.WithUnit("{event}"),
		metric.WithDescription("Events handed to the projection's handler in batches that committed."))
	handle(err)
	wm.batches, err = m.Int64Counter("strata.projection.batches", metric.WithUnit("{batch}"),
		metric.WithDescription("Batches the projection committed."))
	handle(err)
	wm.duration, err = m.Float64Histogram("strata.projection.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to apply and commit one batch, the sink's transaction included."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	handle(err)
	wm.retries, err = m.Int64Counter("strata.projection.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Transient errors the worker retried (a batch, or a restart from the checkpoint)."))
	handle(err)
	wm.deadLetters, err = m.Int64Counter("strata.projection.dead_letters", metric.WithUnit("{event}"),
		metric.WithDescription("Events parked as dead letters under PolicyDeadLetter."))
	handle(err)
	lag, err := m.Int64ObservableGauge("strata.projection.lag", metric.WithUnit("{event}"),
		metric.WithDescription("Events of the log the projection has yet to apply; 0 when it is caught up."))
	handle(err)
	age, err := m.Float64ObservableGauge("strata.projection.lag.age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest event the projection has yet to apply has been stored; 0 when it is caught up."))
	handle(err)
	state, err := m.Int64ObservableGauge("strata.projection.state", metric.WithUnit("{state}"),
		metric.WithDescription("1 for the worker's current state, 0 for the others."))
	handle(err)
	rebuilding := strings.HasSuffix(w.name, RebuildSuffix)
	stateAttrs := make([]metric.ObserveOption, len(metricStates))
	for i, s := range metricStates {
		stateAttrs[i] = metric.WithAttributes(AttrProjection.String(w.name), AttrState.String(s))
	}
	// The registration lives as long as the worker: a stalled or stopped
	// worker still reports its state.
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := string(w.State())
		if rebuilding && st == string(WorkerRunning) {
			st = string(StateRebuilding)
		}
		for i, s := range metricStates {
			v := int64(0)
			if s == st {
				v = 1
			}
			o.ObserveInt64(state, v, stateAttrs[i])
		}
		switch w.State() {
		case WorkerStarting, WorkerStandby, WorkerStopped:
			// Not following the log: another worker, or none, reports
			// the lag.
			return nil
		}
		n, oldest := wm.read.lag(ctx, w.store)
		o.ObserveInt64(lag, n, wm.attrs)
		a := 0.0
		if !oldest.IsZero() {
			a = max(time.Since(oldest).Seconds(), 0)
		}
		o.ObserveFloat64(age, a, wm.attrs)
		return nil
	}, lag, age, state)
	handle(err)
	return wm
}

// handle reports an error of the metrics API to OpenTelemetry's error
// handler: a bad instrument must not stop a projection.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// batch records a committed batch of n events that took d.
func (wm *workerMetrics) batch(ctx context.Context, n int, d time.Duration) {
	wm.batches.Add(ctx, 1, wm.attrs)
	if n > 0 {
		wm.applied.Add(ctx, int64(n), wm.attrs)
	}
	wm.duration.Record(ctx, d.Seconds(), wm.attrs)
}

// progress tracks what the worker has read from the log and not yet
// processed, for the lag gauges: the subscription's goroutine adds the
// pages it reads, the worker removes the records it processed.
type progress struct {
	mu       sync.Mutex
	pages    [][]es.Record // read, not fully processed; the first from off
	off      int
	pending  int64       // records in pages from off
	last     es.Position // the last record read, or where reading started
	caughtUp bool        // the last page read was short: nothing more was visible
	batch    int
}

// reset starts over after from, reading pages of batch records.
func (p *progress) reset(from es.Position, batch int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pages, p.off, p.pending, p.last, p.caughtUp, p.batch = nil, 0, 0, from, false, batch
}

// readPage adds a page the subscription read.
func (p *progress) readPage(recs []es.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.caughtUp = len(recs) < p.batch
	if len(recs) == 0 {
		return
	}
	p.pages = append(p.pages, recs)
	p.pending += int64(len(recs))
	p.last = recs[len(recs)-1].Position
}

// processedTo removes the records read up to and including to: the
// worker committed them.
func (p *progress) processedTo(to es.Position) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.pages) > 0 {
		page := p.pages[0]
		for p.off < len(page) && !to.Before(page[p.off].Position) {
			p.off++
			p.pending--
		}
		if p.off < len(page) {
			return
		}
		p.pages[0] = nil
		p.pages, p.off = p.pages[1:], 0
	}
}

// lag returns how many records are read and not processed, plus, when the
// reader is more than a page behind and the store is an [es.Counter], the
// events beyond what it read; and when the oldest of them was stored (zero
// when none is pending or unknown).
func (p *progress) lag(ctx context.Context, store es.Store) (int64, time.Time) {
	p.mu.Lock()
	n, last, caughtUp := p.pending, p.last, p.caughtUp
	var oldest time.Time
	if len(p.pages) > 0 {
		oldest = p.pages[0][p.off].RecordedAt
	}
	p.mu.Unlock()
	if caughtUp {
		return n, oldest
	}
	c, ok := store.(es.Counter)
	if !ok {
		return n, oldest
	}
	head, err := store.Head(ctx)
	if err != nil {
		return n, oldest
	}
	more, err := c.CountEvents(ctx, last, head)
	if err != nil {
		return n, oldest
	}
	if oldest.IsZero() && more > 0 {
		if recs, err := store.ReadAll(ctx, last, 1); err == nil && len(recs) > 0 {
			oldest = recs[0].RecordedAt
		}
	}
	return n + more, oldest
}
