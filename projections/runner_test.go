package projections_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	err := projections.RunnerConfig{RetryMin: time.Second, RetryMax: time.Millisecond, ResumePoll: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "RetryMin") || !strings.Contains(err.Error(), "ResumePoll") {
		t.Errorf("Validate() = %v, want errors about RetryMin and ResumePoll", err)
	}
	if err := (projections.RunnerConfig{}).Validate(); err != nil {
		t.Errorf("zero RunnerConfig: Validate() = %v", err)
	}
}
