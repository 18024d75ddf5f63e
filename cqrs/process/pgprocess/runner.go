package pgprocess

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgnotify"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// ProjectionPrefix starts the name of the projection (and checkpoint) that
// follows the log for a process manager: "process:" and its name.
const ProjectionPrefix = "process:"

// Defaults for [Config].
const (
	PollIntervalDefault  = time.Second
	DispatchersDefault   = 1
	DispatchBatchDefault = 32
	OutcomeFlushDefault  = 200 * time.Millisecond
	DeadlineBatchDefault = 64
	RetryMinDefault      = 100 * time.Millisecond
	RetryMaxDefault      = 30 * time.Second
)

// Config tunes a [Runner]. The zero value works.
type Config struct {
	// Worker tunes the worker that follows the log (batch size, error
	// policy, ...). Defaults to the zero projections.Config.
	Worker projections.Config
	// Runner tunes the supervision of that worker. Defaults to the zero
	// projections.RunnerConfig.
	Runner projections.RunnerConfig
	// PollInterval is the longest the dispatcher waits before it looks for
	// pending commands again, and the deadline loop for due deadlines,
	// when nothing in this process woke them up. Defaults to 1s.
	PollInterval time.Duration
	// Dispatchers is how many dispatch loops this runner runs. Each keeps
	// a connection to PostgreSQL of its own, outside the pool, for its
	// claims (session advisory locks; see the package doc), so that the
	// commands it dispatches find the pool's connections free: count
	// Dispatchers connections per runner besides the pool. Defaults to 1.
	Dispatchers int
	// DispatchBatch is how many due commands a dispatch loop claims at a
	// time, dispatches on the bus at once (each bus dispatch is the
	// command's own transaction, on a pool connection) and records the
	// outcomes of with one commit. Defaults to 32.
	DispatchBatch int
	// OutcomeFlush bounds how long the outcomes of the commands of a batch
	// that are done wait for the slowest ones: past it they are recorded
	// in a transaction of their own, so that a slow command does not delay
	// the compensation of a rejected one, or the retry of a failed one.
	// Defaults to 200ms.
	OutcomeFlush time.Duration
	// DeadlineBatch is how many due deadlines, of as many instances, the
	// deadline loop fires in one transaction. Defaults to 64.
	DeadlineBatch int
	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// between the attempts of a command that fails transiently. Default to
	// 100ms and 30s.
	RetryMin, RetryMax time.Duration
	// Permanent reports whether a dispatch error is final (the command is
	// marked rejected and decide gets a [process.CommandRejected]) rather
	// than retried. Defaults to [process.Permanent].
	Permanent func(error) bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MeterProvider makes the runner's metrics: commands dispatched by
	// outcome and their duration, deadlines fired or dropped and how late
	// they fired (see [MeterName]); the follower's are the projection
	// worker's, through Worker.MeterProvider, which defaults to this one.
	// Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.PollInterval is %v; want 0 (default) or more", c.PollInterval))
	}
	if c.Dispatchers < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.Dispatchers is %d; want 0 (default) or more", c.Dispatchers))
	}
	if c.DispatchBatch < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.DispatchBatch is %d; want 0 (default) or more", c.DispatchBatch))
	}
	if c.OutcomeFlush < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.OutcomeFlush is %v; want 0 (default) or more", c.OutcomeFlush))
	}
	if c.DeadlineBatch < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.DeadlineBatch is %d; want 0 (default) or more", c.DeadlineBatch))
	}
	if c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("pgprocess: Config.RetryMin (%v) and RetryMax (%v) must not be negative", c.RetryMin, c.RetryMax))
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("pgprocess: Config.RetryMin (%v) is above RetryMax (%v)", c.RetryMin, c.RetryMax))
	}
	if err := c.Worker.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Runner.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.Dispatchers = cmp.Or(c.Dispatchers, DispatchersDefault)
	c.DispatchBatch = cmp.Or(c.DispatchBatch, DispatchBatchDefault)
	c.OutcomeFlush = cmp.Or(c.OutcomeFlush, OutcomeFlushDefault)
	c.DeadlineBatch = cmp.Or(c.DeadlineBatch, DeadlineBatchDefault)
	c.RetryMin = cmp.Or(c.RetryMin, RetryMinDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	if c.Permanent == nil {
		c.Permanent = process.Permanent
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Worker.Logger == nil {
		c.Worker.Logger = c.Logger
	}
	if c.Runner.Logger == nil {
		c.Runner.Logger = c.Logger
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Worker.MeterProvider == nil {
		c.Worker.MeterProvider = c.MeterProvider
	}
	return c
}

// Runner runs one process manager on PostgreSQL: the worker that follows
// the log, the dispatcher of its commands and the loop that fires its
// deadlines. Several runners of the same process manager may run, in one
// process or many: one follows the log at a time (a lease), all dispatch
// and fire deadlines, never the same row at once.
type Runner struct {
	p       process.Process
	cmds    *process.Commands
	bus     *cqrs.Bus
	sink    *pgsink.Sink
	cfg     Config
	worker  *projections.Worker[*pgsink.Tx]
	metrics *runnerMetrics

	commands, deadlines chan struct{} // wake-ups, buffered by one
}

// New returns a runner of p that reads the log of store through reg, keeps
// its rows in sink's read schema (create them with [Migrate]), and
// dispatches its commands on bus, rebuilding them from their JSON through
// cmds. New does no I/O. It panics if an argument is nil or cfg is
// invalid.
func New(store es.Store, reg *es.Registry, sink *pgsink.Sink, bus *cqrs.Bus, p process.Process, cmds *process.Commands, cfg Config) *Runner {
	if store == nil || reg == nil || sink == nil || bus == nil || p == nil || cmds == nil {
		panic("pgprocess: New: nil argument")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	r := &Runner{p: p, cmds: cmds, bus: bus, sink: sink, cfg: cfg.withDefaults(),
		commands: make(chan struct{}, 1), deadlines: make(chan struct{}, 1)}
	r.metrics = newRunnerMetrics(r.cfg.MeterProvider, p.Name())
	pr := &projection{p: p, cmds: cmds}
	r.worker = projections.NewWorker[*pgsink.Tx](store, reg, &wakingSink{Sink: sink, r: r, pr: pr}, pr, r.cfg.Worker)
	return r
}

// Worker returns the worker that follows the log, to read its state.
func (r *Runner) Worker() *projections.Worker[*pgsink.Tx] { return r.worker }

// Run runs the worker, the dispatcher and the deadline loop until ctx
// ends, and returns nil then. It fails at once if the database cannot be
// reached. A failure of the worker is retried as projections.Runner does;
// the dispatcher and the deadline loop retry their own failures with
// backoff.
func (r *Runner) Run(ctx context.Context) error {
	name := r.p.Name()
	var t tables
	err := r.sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t = tablesOf(tx)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgprocess: run %s: %w", name, err)
	}
	channel := t.channel
	// Commands and deadlines added by the runners of other processes wake
	// the loops here; PollInterval is the fallback when a notification is
	// lost (the listening connection broke and pgnotify wakes every
	// subscriber once it is back).
	sub, err := pgnotify.Listen(ctx, r.sink.Pool(), pgnotify.Params{
		Channel: channel,
		Match:   func(payload string) bool { return payload == name },
		Logger:  r.cfg.Logger,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgprocess: run %s: listen for new commands and deadlines: %w", name, err)
	}
	defer sub.Close()
	pr := projections.NewRunner(r.cfg.Runner)
	pr.Add(r.worker)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-sub.C():
				wake(r.commands)
				wake(r.deadlines)
			}
		}
	})
	g.Go(func() error { return pr.Run(ctx) })
	for range r.cfg.Dispatchers {
		g.Go(func() error {
			c := &claimer{r: r, t: t}
			defer c.close()
			r.loop(ctx, "dispatch", r.commands, c.dispatchBatch, r.nextCommand)
			return nil
		})
	}
	g.Go(func() error { r.loop(ctx, "fire deadlines", r.deadlines, r.fireBatch, r.nextDeadline); return nil })
	return g.Wait()
}

// wakingSink wakes the loops after a batch that added commands or
// deadlines has committed.
type wakingSink struct {
	*pgsink.Sink
	r  *Runner
	pr *projection
}

func (s *wakingSink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *pgsink.Tx) error) error {
	var cmds, dls bool
	s.pr.wake = func(c, d bool) { cmds, dls = cmds || c, dls || d }
	err := s.Sink.Apply(ctx, p, handle)
	if err == nil {
		if cmds {
			wake(s.r.commands)
		}
		if dls {
			wake(s.r.deadlines)
		}
	}
	return err
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
