package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stratadev/strata/internal/backoff"
)

// WorkerState is what a worker is doing, as [Worker.State] and
// [Runner.Statuses] report it. Unlike [State], it is not stored: it
// describes one process.
type WorkerState string

const (
	WorkerStarting WorkerState = "starting" // taking the lease, reading the checkpoint
	WorkerRunning  WorkerState = "running"  // applying events, or waiting for more
	WorkerStandby  WorkerState = "standby"  // another worker holds the lease
	WorkerPaused   WorkerState = "paused"   // an operator paused the projection
	WorkerStalled  WorkerState = "stalled"  // stopped at an event it could not handle
	WorkerRetrying WorkerState = "retrying" // retrying a transient error, or restarted after a failure
	WorkerStopped  WorkerState = "stopped"  // not running
)

// Runnable is a worker a [Runner] supervises: a [*Worker] of any sink.
type Runnable interface {
	// Name returns the projection's name.
	Name() string
	// Run runs the worker until ctx ends, like [Worker.Run].
	Run(ctx context.Context) error
	// Checkpoints returns where the projection's checkpoint is kept, so that
	// the runner notices when a stalled projection is resumed.
	Checkpoints() Checkpoints
	// State reports what Run is doing, like [Worker.State].
	State() WorkerState
}

// RunnerConfig configures a [Runner]. The zero value works.
type RunnerConfig struct {
	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// before a worker that failed unexpectedly is started again. Default
	// to RetryMinDefault (100ms) and RetryMaxDefault (10s), the defaults of
	// [Config].
	RetryMin, RetryMax time.Duration
	// PollInterval is how often the runner reads the checkpoint of a stalled
	// projection to notice that it was resumed. When the checkpoints are a
	// [CheckpointWatcher], the runner also wakes up on its signals.
	// Defaults to PollIntervalDefault (1s).
	PollInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called with a worker's status each time the
	// runner starts the worker (WorkerStarting), sees it stall
	// (WorkerStalled) or fail (WorkerRetrying). It must not block. Defaults
	// to nil.
	OnChange func(WorkerStatus)
}

// Validate reports every problem with c at once.
func (c RunnerConfig) Validate() error {
	var errs []error
	if c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("projections: RunnerConfig.RetryMin (%v) and RetryMax (%v) must not be negative", c.RetryMin, c.RetryMax))
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("projections: RunnerConfig.RetryMin (%v) is above RetryMax (%v)", c.RetryMin, c.RetryMax))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("projections: RunnerConfig.PollInterval is %v; want 0 (default) or more", c.PollInterval))
	}
	return errors.Join(errs...)
}

func (c RunnerConfig) withDefaults() RunnerConfig {
	c.RetryMin = cmp.Or(c.RetryMin, RetryMinDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Runner runs many workers in one process and keeps a failure where it
// happened:
//
//   - A worker that stalls ([ErrStalled]) stays stalled and visible: the
//     runner logs the event at fault once and reports it in
//     [Runner.Statuses] and [Runner.Health], while every other worker keeps
//     running. A projection that is stalled already when the runner starts
//     does not keep the others from starting.
//   - When an operator resumes a stalled projection (projections resume,
//     or [Resume]), the runner notices and starts its worker again.
//   - A worker that fails for any other reason is started again after an
//     exponential backoff, instead of taking the process down.
//
// An application runs its workers with one Runner and turns
// [Runner.Health] into a health endpoint.
type Runner struct {
	cfg RunnerConfig

	mu      sync.Mutex
	started bool
	workers []*supervised
}

// supervised is a worker and what the runner knows about it.
type supervised struct {
	w Runnable

	// Guarded by Runner.mu.
	state   WorkerState // WorkerStalled, WorkerRetrying, or "" to ask w
	failure *Failure
	err     error
	since   time.Time
}

// NewRunner returns a runner. It panics if cfg is invalid (see
// [RunnerConfig.Validate]).
func NewRunner(cfg RunnerConfig) *Runner {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Runner{cfg: cfg.withDefaults()}
}

// Add adds workers to run. It panics when a worker is nil, when its
// projection's name is taken already, or when Run has started: those are
// programming errors.
func (r *Runner) Add(workers ...Runnable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		panic("projections: Runner.Add after Run")
	}
	for _, w := range workers {
		if w == nil {
			panic("projections: Runner.Add: nil worker")
		}
		for _, s := range r.workers {
			if s.w.Name() == w.Name() {
				panic(fmt.Sprintf("projections: Runner.Add: %s added twice", w.Name()))
			}
		}
		r.workers = append(r.workers, &supervised{w: w})
	}
}

// Run runs every worker until ctx ends, and returns nil then, like
// http.Server.Serve: no failure of a worker ends it. It returns an error
// only when called twice.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("projections: Runner.Run called twice")
	}
	r.started = true
	workers := r.workers
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range workers {
		wg.Go(func() { r.supervise(ctx, s) })
	}
	wg.Wait()
	return nil
}

// supervise runs s.w until ctx ends.
func (r *Runner) supervise(ctx context.Context, s *supervised) {
	name := s.w.Name()
	log := r.cfg.Logger.With(slog.String("projection", name))
	attempt := 0
	for ctx.Err() == nil {
		r.set(s, "", nil, nil)
		began := time.Now()
		err := s.w.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > r.cfg.RetryMax {
			attempt = 0 // it ran well for a while
		}
		var serr *StalledError
		if errors.As(err, &serr) {
			f := serr.Failure
			r.set(s, WorkerStalled, &f, err)
			log.ErrorContext(ctx, "projections: projection stalled; the others keep running",
				slog.String("stream", f.Stream), slog.Int64("version", f.Version),
				slog.String("position", f.Position.String()), slog.String("type", f.Type),
				slog.String("error", f.Error))
			if !r.waitResumed(ctx, s.w) {
				return
			}
			log.InfoContext(ctx, "projections: projection resumed; starting its worker again")
			attempt = 0
			continue
		}
		if err == nil {
			err = errors.New("projections: worker stopped before its context ended")
		}
		r.set(s, WorkerRetrying, nil, err)
		log.ErrorContext(ctx, "projections: worker failed; starting it again after a backoff", slog.Any("error", err))
		if !(backoff.Backoff{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax}).Wait(ctx, attempt) {
			return
		}
		attempt++
	}
}

// waitResumed waits until the projection of w is no longer stalled. It
// reports false when ctx ended first.
func (r *Runner) waitResumed(ctx context.Context, w Runnable) bool {
	cps := w.Checkpoints()
	var changed <-chan struct{}
	if cw, ok := cps.(CheckpointWatcher); ok {
		if ch, stop, err := cw.WatchCheckpoint(ctx, w.Name()); err == nil {
			defer stop()
			changed = ch
		}
	}
	logged := false
	for {
		cp, err := cps.Checkpoint(ctx, w.Name())
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil:
			if !logged {
				logged = true
				r.cfg.Logger.WarnContext(ctx, "projections: read the checkpoint of a stalled projection",
					slog.String("projection", w.Name()), slog.Any("error", err))
			}
		case cp.State != StateStalled:
			return true
		}
		if !wait(ctx, changed, r.cfg.PollInterval) {
			return false
		}
	}
}

// set records what the runner knows about s: state "" leaves it to the
// worker to say.
func (r *Runner) set(s *supervised, state WorkerState, f *Failure, err error) {
	r.mu.Lock()
	s.state, s.failure, s.err, s.since = state, f, err, time.Now()
	st := WorkerStatus{Name: s.w.Name(), State: cmp.Or(state, WorkerStarting), Failure: f, Err: err, Since: s.since}
	r.mu.Unlock()
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(st)
	}
}

// WorkerStatus is what a worker of a [Runner] is doing.
type WorkerStatus struct {
	Name  string
	State WorkerState
	// Failure is the event the projection stalled at, when State is
	// WorkerStalled.
	Failure *Failure
	// Err is the last error of the worker, when State is WorkerStalled or
	// WorkerRetrying.
	Err error
	// Since is when the runner last started the worker, or when it stalled
	// or failed.
	Since time.Time
}

// String describes s in a line, such as "order_search running" or
// `order_search stalled at 726:8: event order-7@1 (type "OrderPlaced"): ...`.
func (s WorkerStatus) String() string {
	switch {
	case s.State == WorkerStalled && s.Failure != nil:
		f := s.Failure
		return fmt.Sprintf("%s stalled at %s: event %s@%d (type %q): %s", s.Name, f.Position, f.Stream, f.Version, f.Type, f.Error)
	case s.State == WorkerRetrying && s.Err != nil:
		return fmt.Sprintf("%s retrying after an error: %v", s.Name, s.Err)
	}
	return fmt.Sprintf("%s %s", s.Name, s.State)
}

// Statuses reports what each worker is doing, in the order they were added.
func (r *Runner) Statuses() []WorkerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]WorkerStatus, 0, len(r.workers))
	for _, s := range r.workers {
		st := WorkerStatus{Name: s.w.Name(), State: s.state, Failure: s.failure, Err: s.err, Since: s.since}
		if st.State == "" {
			st.State = s.w.State()
		}
		out = append(out, st)
	}
	return out
}

// Health is a summary of [Runner.Statuses] for a health endpoint.
type Health struct {
	Workers []WorkerStatus
}

// Health reports whether every worker is healthy.
func (r *Runner) Health() Health { return Health{Workers: r.Statuses()} }

// OK reports whether no worker is stalled or retrying. A paused projection,
// or one whose lease another process holds, is healthy.
func (h Health) OK() bool { return len(h.Degraded()) == 0 }

// Degraded returns the workers that are stalled or retrying.
func (h Health) Degraded() []WorkerStatus {
	var out []WorkerStatus
	for _, s := range h.Workers {
		if s.State == WorkerStalled || s.State == WorkerRetrying {
			out = append(out, s)
		}
	}
	return out
}

// String is "ok" when h is OK, and otherwise "degraded: " followed by each
// stalled or retrying worker, separated by "; ".
func (h Health) String() string {
	bad := h.Degraded()
	if len(bad) == 0 {
		return "ok"
	}
	parts := make([]string, len(bad))
	for i, s := range bad {
		parts[i] = s.String()
	}
	return "degraded: " + strings.Join(parts, "; ")
}
