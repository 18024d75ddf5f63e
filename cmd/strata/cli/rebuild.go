package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/internal/backoff"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/pgsink"
)

// Default time between progress reports of a rebuild.
const (
	progressEveryTTY   = 200 * time.Millisecond
	progressEveryLines = 5 * time.Second
)

func (a *app) rebuildCommand() *cobra.Command {
	var (
		wait      bool
		every     time.Duration
		onError   string
		republish bool
	)
	cmd := &cobra.Command{
		Use:   "rebuild <name>",
		Short: "Build a projection's tables anew, blue/green, with progress",
		Long: `Build a projection's tables anew from the start of the log, beside the live
ones, which keep serving reads and following the log; once the new
generation has caught up, swap it in atomically and drop the old one.

A progress bar (events done / total, rate, ETA) is redrawn on a terminal;
elsewhere a progress line is printed every --progress-interval. The command
returns when the new tables are live.

Ctrl-C stops the rebuild cleanly (exit 0); running the command again
resumes it where it stopped. Only one rebuild of a projection runs at a
time: when another process is rebuilding it, the command reports that
rebuild's progress and exits 1, or with --wait follows it until it swaps.

A Kafka projection has no tables to rebuild: rebuilding it means publishing
every event of the log again from the start, which its consumers see a
second time, with the same ce_id. Without --republish the command refuses
and says so (exit 2); with it, it moves the projection's checkpoint, in
Kafka and in PostgreSQL, to the start (its workers must be stopped: this
needs the projection's lease), and its workers then publish everything
again ('projections run').`,
		Example: fmt.Sprintf(`  %[1]s projections rebuild order_view
  %[1]s projections rebuild order_view --wait      # or follow the one running elsewhere
  %[1]s projections rebuild order_view 2>&1 | tee rebuild.log
  %[1]s projections rebuild order_events --republish   # a Kafka projection`, a.cfg.Name),
		Args:              exactArgs(1, "one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			if every < 0 {
				return usagef("--progress-interval must not be negative")
			}
			if kp, ok := a.registeredKafka(args[0]); ok {
				if !republish {
					return a.rebuildNeedsRepublish(args[0])
				}
				return a.rebuildKafka(cmd.Context(), kp)
			}
			if republish {
				return usagef("--republish is for Kafka projections, and %q is not one this binary registers", args[0])
			}
			pg, ep, err := a.oneProjection(args[0], onError)
			if err != nil {
				return err
			}
			var rb pgsink.Rebuildable
			if pg != nil {
				var ok bool
				if rb, ok = pg.Projection.(pgsink.Rebuildable); !ok {
					return usagef("projection %q cannot be rebuilt: it does not name its tables (pgsink.Rebuildable: Tables and Setup); use 'projections reset' to replay it into its tables", args[0])
				}
			}
			every = a.progressEvery(every)
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			if ep != nil {
				return a.rebuildElastic(ctx, c, *ep, every)
			}
			return a.rebuild(ctx, c, *pg, rb, every, wait)
		},
	}
	cmd.Flags().StringVar(&onError, "on-error", "", "what to do with an event the projection cannot handle: stop or dead-letter (default: as the application configured, else stop)")
	cmd.Flags().BoolVar(&wait, "wait", false, "when another process is rebuilding the projection, follow its progress until it swaps")
	cmd.Flags().BoolVar(&republish, "republish", false, "for a Kafka projection: publish every event of the log again, from the start (its workers must be stopped)")
	cmd.Flags().DurationVar(&every, "progress-interval", 0, "time between progress reports (default: 200ms on a terminal, 5s otherwise)")
	return cmd
}

func (a *app) rebuild(ctx context.Context, c *conn, p Projection, rb pgsink.Rebuildable, every time.Duration, wait bool) error {
	name := p.name()
	w := a.stdout()
	prev, inProgress, err := c.sink.RebuildStatus(ctx, name)
	if err != nil {
		return a.explain(err)
	}
	if inProgress && !prev.Running {
		// A rebuild that stalled is tried again (pgsink's Rebuild does
		// that): the operator asked for it, usually after a fix or with
		// --on-error dead-letter.
		if err := prev.Count(ctx, c.store); err != nil {
			return a.explain(err)
		}
		if prev.Estimated {
			fmt.Fprintf(w, "resuming the rebuild of %s at %s\n", name, percent(prev.Done, prev.Total))
		} else {
			fmt.Fprintf(w, "resuming the rebuild of %s at %s of %s events\n", name, formatCount(prev.Done), formatCount(prev.Total))
		}
	}
	bar := a.newProgressBar(name)
	defer a.logs.attach(nil)
	wcfg := p.Worker
	if wcfg.Logger == nil {
		wcfg.Logger = c.log
	}
	err = c.sink.Rebuild(ctx, c.store, a.cfg.Registry, rb, pgsink.RebuildConfig{
		Worker: wcfg, Progress: bar.update, ProgressEvery: every,
	})
	var busy *pgsink.RebuildRunningError
	if errors.As(err, &busy) {
		if !wait {
			pr := busy.Progress
			if pr.Estimated {
				return fmt.Errorf("a rebuild of %s is already running: %s, ETA %s; not starting another (--wait follows it)",
					name, percent(pr.Done, pr.Total), etaText(pr.ETA))
			}
			return fmt.Errorf("a rebuild of %s is already running: %s of %s events (%s), %s, ETA %s; not starting another (--wait follows it)",
				name, formatCount(pr.Done), formatCount(pr.Total), percent(pr.Done, pr.Total), formatRate(pr.Rate), etaText(pr.ETA))
		}
		fmt.Fprintf(w, "a rebuild of %s is running in another process; following it\n", name)
		return a.follow(ctx, c, name, bar, every)
	}
	return a.rebuilt(ctx, c, bar, err)
}

// rebuildElastic rebuilds an Elasticsearch projection: a new index behind
// its alias.
func (a *app) rebuildElastic(ctx context.Context, c *conn, p ElasticProjection, every time.Duration) error {
	name := p.name()
	s, err := c.elasticSink()
	if err != nil {
		return err
	}
	cp, err := c.sink.Checkpoint(ctx, name+projections.RebuildSuffix)
	if err != nil {
		return a.explain(err)
	}
	switch cp.State {
	case projections.StateRebuilding:
		fmt.Fprintf(a.stdout(), "resuming the rebuild of %s at %s\n", name, cp.Position)
	case projections.StateStalled:
		// Tried again: the operator asked for it, usually after a fix or
		// with --on-error dead-letter.
		fmt.Fprintf(a.stdout(), "resuming the rebuild of %s at %s\n", name, cp.Position)
		if err := c.sink.SetState(ctx, name+projections.RebuildSuffix, projections.StateRebuilding, nil); err != nil {
			return err
		}
	}
	bar := a.newProgressBar(name)
	defer a.logs.attach(nil)
	wcfg := p.Worker
	if wcfg.Logger == nil {
		wcfg.Logger = c.log
	}
	err = s.Rebuild(ctx, c.store, a.cfg.Registry, p.Projection, elasticsink.RebuildConfig{
		Worker: wcfg, Progress: bar.update, ProgressEvery: every,
	})
	return a.rebuilt(ctx, c, bar, err)
}

// newProgressBar returns the bar of a rebuild; on a terminal, log lines go
// around it until a.logs.attach(nil).
func (a *app) newProgressBar(name string) *progressBar {
	bar := &progressBar{w: a.stdout(), tty: a.tty(), name: name, began: time.Now()}
	if bar.tty {
		a.logs.attach(bar)
	}
	return bar
}

// rebuilt reports how a rebuild that ran here ended.
func (a *app) rebuilt(ctx context.Context, c *conn, bar *progressBar, err error) error {
	name, w := bar.name, a.stdout()
	var stalled *projections.StalledError
	switch {
	case err == nil:
		bar.finish()
		fmt.Fprintf(w, "swapped: %s now serves the new generation (%s events in %s)\n", name, formatCount(bar.last.Total), formatAge(time.Since(bar.began)))
		return nil
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		bar.finish()
		pr, ok, _ := c.sink.RebuildStatus(context.WithoutCancel(ctx), name)
		if !ok { // an Elasticsearch rebuild: as far as it reported
			pr = bar.progress()
		}
		fmt.Fprintf(w, "stopped the rebuild of %s at %s of %s events; run '%s projections rebuild %s' again to resume\n",
			name, formatCount(pr.Done), formatCount(pr.Total), a.cfg.Name, name)
		return nil
	case errors.As(err, &stalled):
		bar.finish()
		return fmt.Errorf("the rebuild of %s stalled at %s; fix the projection and rebuild again to resume, or rebuild with --on-error dead-letter",
			name, stalled.Failure)
	default:
		bar.finish()
		return a.explain(err)
	}
}

// follow reports the progress of a rebuild another process runs until it
// swaps.
func (a *app) follow(ctx context.Context, c *conn, name string, bar *progressBar, every time.Duration) error {
	for {
		pr, ok, err := c.sink.RebuildStatus(ctx, name)
		if ctx.Err() != nil {
			bar.finish()
			return nil
		}
		if err != nil {
			bar.finish()
			return a.explain(err)
		}
		if !ok {
			bar.finish()
			fmt.Fprintf(a.stdout(), "swapped: %s now serves the new generation\n", name)
			return nil
		}
		if !pr.Running {
			// It may have just swapped: look once more.
			if _, ok, err := c.sink.RebuildStatus(ctx, name); err == nil && !ok {
				continue
			}
			bar.finish()
			return fmt.Errorf("the rebuild of %s stopped at %s of %s events before swapping; run '%s projections rebuild %s' to resume it",
				name, formatCount(pr.Done), formatCount(pr.Total), a.cfg.Name, name)
		}
		bar.update(pr)
		if !backoff.Sleep(ctx, every) {
			bar.finish()
			return nil
		}
	}
}

// progressBar renders rebuild progress: a bar redrawn with \r on a
// terminal, a line per report elsewhere.
type progressBar struct {
	w     io.Writer
	tty   bool
	name  string
	began time.Time

	mu    sync.Mutex
	last  projections.RebuildProgress
	drawn bool
	line  string // as last drawn
}

const barWidth = 30

func (b *progressBar) update(p projections.RebuildProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = p
	if p.Swapped {
		p.Done = max(p.Done, p.Total)
	}
	counts := fmt.Sprintf("%s/%s events", formatCount(p.Done), formatCount(p.Total))
	rate := formatRate(p.Rate)
	if p.Estimated {
		// Positions, not events: only their ratio means something.
		counts, rate = "estimated from log positions", "-"
	}
	if !b.tty {
		fmt.Fprintf(b.w, "%s: %s (%s), %s, ETA %s\n", b.name, counts, percent(p.Done, p.Total), rate, etaText(p.ETA))
		return
	}
	filled := barWidth
	if p.Total > 0 {
		filled = int(min(p.Done, p.Total) * barWidth / p.Total)
	}
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	b.line = fmt.Sprintf("\r\x1b[K%s [%s] %4s  %s  %s  ETA %s", b.name, bar, percent(p.Done, p.Total), counts, rate, etaText(p.ETA))
	fmt.Fprint(b.w, b.line)
	b.drawn = true
}

// logWriter is where the logger writes: stderr. While a progress bar is
// drawn on a terminal, a log line would land at the end of the bar's line:
// the bar is cleared first and drawn again below the log line.
type logWriter struct {
	w io.Writer

	mu  sync.Mutex
	bar *progressBar
}

// attach makes log lines go around bar while it is drawn; nil detaches.
func (l *logWriter) attach(bar *progressBar) {
	l.mu.Lock()
	l.bar = bar
	l.mu.Unlock()
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	bar := l.bar
	l.mu.Unlock()
	if bar == nil {
		return l.w.Write(p)
	}
	return bar.around(func() (int, error) { return l.w.Write(p) })
}

// around runs write, which prints a whole line elsewhere on the terminal,
// with the bar cleared and then drawn again.
func (b *progressBar) around(write func() (int, error)) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.drawn {
		return write()
	}
	fmt.Fprint(b.w, "\r\x1b[K")
	n, err := write()
	fmt.Fprint(b.w, b.line)
	return n, err
}

// progress returns the last progress reported.
func (b *progressBar) progress() projections.RebuildProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// finish ends the bar's line.
func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

func etaText(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatAge(d.Round(time.Second))
}

// progressEvery returns --progress-interval, or when it is 0 the default
// for where the output goes: a terminal redraws its bar often, a pipe gets
// a line now and then.
func (a *app) progressEvery(every time.Duration) time.Duration {
	switch {
	case every != 0:
		return every
	case a.tty():
		return progressEveryTTY
	}
	return progressEveryLines
}
