package projections_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// flaky fails its first runs with an unexpected error, then runs until its
// context ends.
type flaky struct {
	name     string
	cps      projections.Checkpoints
	failures int32
	runs     atomic.Int32
	running  chan struct{} // closed by the first run that does not fail
}

func (f *flaky) Name() string                         { return f.name }
func (f *flaky) Checkpoints() projections.Checkpoints { return f.cps }
func (f *flaky) State() projections.WorkerState       { return projections.WorkerRunning }

func (f *flaky) Run(ctx context.Context) error {
	if f.runs.Add(1) <= f.failures {
		return errors.New("connection refused")
	}
	close(f.running)
	<-ctx.Done()
	return nil
}

func TestRunnerRetriesUnexpectedErrors(t *testing.T) {
	t.Parallel()
	sink := memsink.New()
	f := &flaky{name: "flaky", cps: sink, failures: 3, running: make(chan struct{})}
	retrying := make(chan projections.WorkerStatus, 100)
	r := projections.NewRunner(projections.RunnerConfig{
		Logger: quiet, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnChange: func(s projections.WorkerStatus) {
			if s.State == projections.WorkerRetrying {
				retrying <- s
			}
		},
	})
	r.Add(f)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-f.running:
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker was not started again after failing; it ran %d times", f.runs.Load())
	}
	if got := f.runs.Load(); got != 4 {
		t.Errorf("Run was called %d times, want 4", got)
	}
	if len(retrying) != 3 {
		t.Errorf("%d retrying reports, want 3", len(retrying))
	}
	st := <-retrying
	if want := "flaky retrying after an error: connection refused"; st.String() != want {
		t.Errorf("status = %q, want %q", st, want)
	}
	if h := r.Health(); !h.OK() {
		t.Errorf("Health() = %q once running again, want ok", h)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
}

func TestRunnerHealthString(t *testing.T) {
	t.Parallel()
	h := projections.Health{Workers: []projections.WorkerStatus{
		{Name: "a", State: projections.WorkerRunning},
		{Name: "b", State: projections.WorkerStandby},
		{Name: "c", State: projections.WorkerRetrying, Err: errors.New("boom")},
		{Name: "d", State: projections.WorkerPaused},
	}}
	if want := "degraded: c retrying after an error: boom"; h.String() != want || h.OK() {
		t.Errorf("Health = %q (OK %v), want %q (OK false)", h, h.OK(), want)
	}
	h.Workers = h.Workers[:2]
	if h.String() != "ok" || !h.OK() {
		t.Errorf("Health = %q (OK %v), want ok", h, h.OK())
	}
}

func TestRunnerConfigValidate(t *testing.T) {
	t.Parallel()
	err := projections.RunnerConfig{RetryMin: time.Second, RetryMax: time.Millisecond, PollInterval: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "RetryMin") || !strings.Contains(err.Error(), "PollInterval") {
		t.Errorf("Validate() = %v, want errors about RetryMin and PollInterval", err)
	}
	if err := (projections.RunnerConfig{}).Validate(); err != nil {
		t.Errorf("zero RunnerConfig: Validate() = %v", err)
	}
}

// outage is a memsink whose batches fail with a transient error while down
// is set, and which says when a batch failed.
type outage struct {
	*memsink.Sink
	down   atomic.Bool
	failed chan struct{} // receives after each failed batch
}

var errOutage = errors.New("no answer from the server within 2s")

func (s *outage) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *memsink.Tx) error) error {
	if s.down.Load() {
		select {
		case s.failed <- struct{}{}:
		default:
		}
		return errOutage
	}
	return s.Sink.Apply(ctx, p, handle)
}

func (s *outage) Transient(err error) bool { return errors.Is(err, errOutage) }

// A worker retrying a transient error says so to the runner, and is
// healthy again once a batch commits.
func TestRunnerHealthShowsTransientRetries(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	sink := &outage{Sink: memsink.New(), failed: make(chan struct{}, 1)}
	sink.down.Store(true)
	w := projections.NewWorker(store, newRegistry(), projections.Sink[*memsink.Tx](sink), projections.Projection[*memsink.Tx](stock{name: "stock"}),
		projections.Config{Logger: quiet, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	r := projections.NewRunner(projections.RunnerConfig{Logger: quiet})
	r.Add(w)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	res := appendAdded(t, store, "a", 5)
	select {
	case <-sink.failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch was tried within 10s")
	}
	<-sink.failed // the state is set before the next attempt
	if h := r.Health(); h.OK() || !strings.Contains(h.String(), "stock retrying") {
		t.Errorf("Health() during the outage = %q, want degraded: stock retrying", h)
	}
	sink.down.Store(false)
	waitFor(t, sink.Sink, "stock", res.Position)
	// The worker marks itself healthy after the batch commits and before it
	// takes the next one: once a later batch is in, it has.
	res = appendAdded(t, store, "b", 1)
	waitFor(t, sink.Sink, "stock", res.Position)
	if h := r.Health(); !h.OK() {
		t.Errorf("Health() after the outage = %q, want ok", h)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
