package pgsink_test

import (
	"context"
	"testing"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// TestWorkersRunEveryProjection runs projections held as interface values,
// as applications list them, through pgsink.Workers and one Runner.
func TestWorkersRunEveryProjection(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	head := e.importEvents(t, 30)
	ps := []projections.Projection[*pgsink.Tx]{counter{name: "first"}, counter{name: "second"}}
	ws := pgsink.Workers(e.store, e.reg, e.sink, projections.Config{Logger: quiet}, ps...)
	if len(ws) != len(ps) {
		t.Fatalf("Workers returned %d workers, want %d", len(ws), len(ps))
	}
	r := projections.NewRunner(projections.RunnerConfig{Logger: quiet})
	r.Add(ws...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for i, p := range ps {
		if got := ws[i].Name(); got != p.Name() {
			t.Errorf("worker %d: Name = %q, want %q", i, got, p.Name())
		}
		e.waitFor(t, p.Name(), head)
		if once, more := e.counts(t, p.Name()); once != 30 || more != 0 {
			t.Errorf("%s: applied once %d, more than once %d; want 30, 0", p.Name(), once, more)
		}
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestNewWorkerRejectsNilSink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	defer func() {
		if recover() == nil {
			t.Error("NewWorker with a nil sink did not panic")
		}
	}()
	pgsink.NewWorker(e.store, e.reg, nil, counter{name: "c"}, projections.Config{})
}
