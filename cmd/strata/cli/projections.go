package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func (a *app) projectionsCommand() *cobra.Command {
	cmd := group("projections", "List, watch, run, rebuild, pause and resume projections",
		fmt.Sprintf(`  %[1]s projections status --watch
  %[1]s projections run
  %[1]s projections rebuild order_view`, a.cfg.Name),
		a.projectionsListCommand(), a.projectionsStatusCommand(), a.runCommand(), a.rebuildCommand(),
		a.verifyCommand(), a.resetCommand(), a.pauseCommand(), a.resumeCommand(), a.deadLettersCommand())
	cmd.Aliases = []string{"projection", "proj"}
	return cmd
}

// knownNames lists the projections the sink has (a checkpoint, a rebuild in
// progress or dead letters) or that are registered here.
func (a *app) knownNames(ctx context.Context, c *conn) ([]string, error) {
	infos, err := c.sink.Projections(ctx)
	if err != nil {
		return nil, a.explain(err)
	}
	var names []string
	for _, p := range infos {
		names = append(names, p.Name)
	}
	for _, n := range a.registeredNames() {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// known checks that name is a projection: registered here or with a
// checkpoint.
func (a *app) known(ctx context.Context, c *conn, name string) error {
	names, err := a.knownNames(ctx, c)
	if err != nil {
		return err
	}
	if slices.Contains(names, name) {
		return nil
	}
	if len(names) == 0 {
		return usagef("unknown projection %q: there are no projections in schema %s yet", name, a.flags.schema)
	}
	return usagef("unknown projection %q; known projections: %s", name, strings.Join(names, ", "))
}

// completeProjections completes projection names from the registered ones.
func (a *app) completeProjections(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return a.registeredNames(), cobra.ShellCompDirectiveNoFileComp
}

func (a *app) projectionsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List projections with their state and checkpoint",
		Long: `List the projections that have a checkpoint in --schema, and those this
binary registers, with their state and checkpoint, and the kind of those
it registers: postgres, elasticsearch or kafka. For lag, throughput and
errors see 'projections status'.`,
		Example: fmt.Sprintf("  %[1]s projections list\n  %[1]s projections list -o json", a.cfg.Name),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			names, err := a.knownNames(ctx, c)
			if err != nil {
				return err
			}
			type item struct {
				Name       string            `json:"name"`
				State      projections.State `json:"state"`
				Checkpoint es.Position       `json:"checkpoint"`
				Registered bool              `json:"registered"`
				Kind       string            `json:"kind,omitempty"` // postgres, elasticsearch or kafka; empty when not registered
				UpdatedAt  time.Time         `json:"updated_at"`
			}
			items := []item{}
			for _, n := range names {
				cp, err := c.sink.Checkpoint(ctx, n)
				if err != nil {
					return err
				}
				kind := a.kind(n)
				items = append(items, item{Name: n, State: cp.State, Checkpoint: cp.Position, Registered: kind != "", Kind: kind, UpdatedAt: cp.UpdatedAt})
			}
			if a.format() == formatJSON {
				return a.writeJSON(items)
			}
			t := a.newTable("NAME", "STATE", "CHECKPOINT", "UPDATED", "KIND")
			for _, it := range items {
				t.row(it.Name, string(it.State), it.Checkpoint.String(), formatTime(it.UpdatedAt), cmp.Or(it.Kind, "-"))
			}
			t.flush()
			return nil
		},
	}
}

// projStatus is what status shows of a projection.
type projStatus struct {
	Name           string               `json:"name"`
	State          projections.State    `json:"state"`
	Checkpoint     es.Position          `json:"checkpoint"`
	Head           es.Position          `json:"head"`
	LagEvents      int64                `json:"lag_events"`
	LagEstimated   bool                 `json:"lag_estimated,omitempty"`
	HeldBackEvents int64                `json:"held_back_events,omitempty"`
	LagSeconds     float64              `json:"lag_seconds"`
	Throughput     *float64             `json:"throughput_per_second,omitempty"`
	WorkerPID      int                  `json:"worker_pid,omitempty"`
	Rebuild        *rebuildJSON         `json:"rebuild,omitempty"`
	DeadLetters    int64                `json:"dead_letters"`
	LastError      *projections.Failure `json:"last_error,omitempty"`
	UpdatedAt      time.Time            `json:"updated_at"`
	HeldBack       string               `json:"held_back,omitempty"`

	lag time.Duration
}

type rebuildJSON struct {
	Done       int64   `json:"done"`
	Total      int64   `json:"total"`
	Rate       float64 `json:"rate"`
	ETASeconds float64 `json:"eta_seconds"`
	Running    bool    `json:"running"` // a process is rebuilding it now
	// Estimated: done and total are log positions, not event counts.
	Estimated bool `json:"estimated,omitempty"`
}

// sample is a set of checkpoints at a time, for throughput.
type sample struct {
	at  time.Time
	cps map[string]es.Position
}

func (a *app) takeSample(ctx context.Context, c *conn, names []string) (sample, error) {
	s := sample{at: time.Now(), cps: map[string]es.Position{}}
	for _, n := range names {
		cp, err := c.sink.Checkpoint(ctx, n)
		if err != nil {
			return s, err
		}
		s.cps[n] = cp.Position
	}
	return s, nil
}

// statuses reads the status of each projection; with prev, it adds the
// throughput since then.
func (a *app) statuses(ctx context.Context, c *conn, names []string, prev *sample) ([]projStatus, sample, error) {
	opts := projections.StatusOptions{Store: c.store, Checkpoints: c.sink}
	if c.pg != nil {
		opts.HeldBack = c.pg.HeldBackReason
	}
	now := sample{at: time.Now(), cps: map[string]es.Position{}}
	out := make([]projStatus, 0, len(names))
	infos, err := c.sink.Projections(ctx)
	if err != nil {
		return nil, now, a.explain(err)
	}
	dead := map[string]int64{}
	for _, p := range infos {
		dead[p.Name] = p.DeadLetters
	}
	for _, n := range names {
		st, err := projections.ReadStatus(ctx, opts, n)
		if err != nil {
			return nil, now, a.explain(err)
		}
		now.cps[n] = st.Checkpoint
		ps := projStatus{
			Name: n, State: st.State, Checkpoint: st.Checkpoint, Head: st.Head,
			LagEvents: st.LagEvents, LagEstimated: st.LagEstimated, HeldBackEvents: st.HeldBackEvents, LagSeconds: st.Lag.Seconds(), lag: st.Lag,
			LastError: st.LastError, UpdatedAt: st.UpdatedAt, HeldBack: st.HeldBack, DeadLetters: dead[n],
		}
		if prev != nil {
			if from, ok := prev.cps[n]; ok {
				k, err := countBetween(ctx, c.store, from, st.Checkpoint)
				if err != nil {
					return nil, now, err
				}
				r := 0.0
				if el := now.at.Sub(prev.at).Seconds(); el > 0 {
					r = float64(k) / el
				}
				ps.Throughput = &r
			}
		}
		if pid, held, err := c.sink.LeaseHolder(ctx, n); err != nil {
			return nil, now, err
		} else if held {
			ps.WorkerPID = pid
		}
		if pr, ok, err := c.sink.RebuildStatus(ctx, n); err != nil {
			return nil, now, a.explain(err)
		} else if ok {
			if err := pr.Count(ctx, c.store); err != nil {
				return nil, now, a.explain(err)
			}
			ps.Rebuild = &rebuildJSON{Done: pr.Done, Total: pr.Total, Rate: pr.Rate, ETASeconds: pr.ETA.Seconds(), Running: pr.Running, Estimated: pr.Estimated}
		}
		out = append(out, ps)
	}
	return out, now, nil
}

// countBetween counts the events after from up to to: with the store's
// counter when it has one, else by reading at most
// projections.LagCountLimit of them (beyond that the throughput is a lower
// bound; positions are not counts on every store).
func countBetween(ctx context.Context, store es.Store, from, to es.Position) (int64, error) {
	if c, ok := store.(es.Counter); ok {
		return c.CountEvents(ctx, from, to)
	}
	var n int64
	for from.Before(to) && n < projections.LagCountLimit {
		recs, err := store.ReadAll(ctx, from, 1000)
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if to.Before(r.Position) {
				return n, nil
			}
			n++
		}
		if len(recs) == 0 {
			return n, nil
		}
		from = recs[len(recs)-1].Position
	}
	return n, nil
}

func (a *app) projectionsStatusCommand() *cobra.Command {
	var (
		watch    bool
		interval time.Duration
		sampleD  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [name]",
		Short: "Show state, checkpoint, head, lag, throughput and last error",
		Long: `Show what projections are doing: state, checkpoint, the head of the log,
lag in events and in time (how long the oldest event not yet applied has
been stored), throughput, the worker holding the lease, a rebuild in
progress, dead letters and the last error. When an open transaction holds
readers of the log back, status says which.

Throughput is measured over --sample (or between refreshes with --watch).
--watch refreshes every --interval until interrupted.`,
		Example: fmt.Sprintf(`  %[1]s projections status
  %[1]s projections status order_view
  %[1]s projections status --watch --interval 5s
  %[1]s projections status -o json --sample 0`, a.cfg.Name),
		Args:              rangeArgs(0, 1, "at most one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 || sampleD < 0 {
				return usagef("--interval must be positive and --sample must not be negative")
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			names, err := a.knownNames(ctx, c)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if err := a.known(ctx, c, args[0]); err != nil {
					return err
				}
				names = args
			}
			var prev *sample
			if !watch && sampleD > 0 {
				s, err := a.takeSample(ctx, c, names)
				if err != nil {
					return err
				}
				if !backoff.Sleep(ctx, sampleD) {
					return nil
				}
				prev = &s
			}
			for frame := 0; ; frame++ {
				sts, now, err := a.statuses(ctx, c, names, prev)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if err := a.renderStatus(sts, len(args) == 1, watch, frame); err != nil {
					return err
				}
				if !watch {
					return nil
				}
				prev = &now
				if !backoff.Sleep(ctx, interval) {
					return nil
				}
			}
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&watch, "watch", "w", false, "refresh until interrupted")
	f.DurationVar(&interval, "interval", 2*time.Second, "time between refreshes with --watch")
	f.DurationVar(&sampleD, "sample", time.Second, "measure throughput over this long (0: do not)")
	return cmd
}

func (a *app) renderStatus(sts []projStatus, one, watch bool, frame int) error {
	w := a.stdout()
	format := a.format()
	if format == formatJSON {
		if watch { // one document per refresh, one per line
			return writeCompactJSON(w, sts)
		}
		if one {
			return a.writeJSON(sts[0])
		}
		return a.writeJSON(sts)
	}
	if watch && format == formatTable {
		if a.tty() {
			fmt.Fprint(w, "\x1b[H\x1b[2J") // redraw in place
		} else if frame > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  (every refresh; Ctrl-C to stop)\n\n", time.Now().Format("15:04:05"))
	}
	if one && format == formatTable {
		a.renderStatusDetail(w, sts[0])
		return nil
	}
	t := a.newTable("NAME", "STATE", "CHECKPOINT", "HEAD", "LAG", "LAG TIME", "RATE", "WORKER", "LAST ERROR")
	for _, s := range sts {
		t.row(s.Name, stateCell(s), s.Checkpoint.String(), s.Head.String(), lagCell(s), formatAge(s.lag),
			rateCell(s), workerCell(s), errorCell(s, !t.lines))
	}
	t.flush()
	if len(sts) > 0 && sts[0].HeldBack != "" && format == formatTable {
		fmt.Fprintf(w, "\nreaders of the log are %s\n", sts[0].HeldBack)
	}
	return nil
}

func (a *app) renderStatusDetail(w io.Writer, s projStatus) {
	t := a.newTable("", "")
	t.wrote = true // no header
	t.row("projection", s.Name)
	t.row("state", stateCell(s))
	t.row("checkpoint", s.Checkpoint.String())
	t.row("head", s.Head.String())
	t.row("lag", fmt.Sprintf("%s events, %s", lagCell(s), formatAge(s.lag)))
	t.row("throughput", rateCell(s))
	t.row("worker", workerCell(s))
	if s.Rebuild != nil {
		r := s.Rebuild
		how := "interrupted; run rebuild again to resume"
		if r.Running {
			how = "running"
		}
		if r.Estimated {
			t.row("rebuild", fmt.Sprintf("%s, estimated from log positions, %s", percent(r.Done, r.Total), how))
		} else {
			t.row("rebuild", fmt.Sprintf("%s of %s events (%s), %s", formatCount(r.Done), formatCount(r.Total), percent(r.Done, r.Total), how))
		}
	} else {
		t.row("rebuild", "-")
	}
	t.row("dead letters", formatCount(s.DeadLetters))
	t.row("last error", errorCell(s, false))
	t.row("updated", formatTime(s.UpdatedAt))
	if s.HeldBack != "" {
		t.row("held back", s.HeldBack)
	}
	t.flush()
}

func stateCell(s projStatus) string {
	if s.Rebuild != nil && s.Rebuild.Running {
		return string(s.State) + "+rebuilding"
	}
	return string(s.State)
}

func lagCell(s projStatus) string {
	if s.LagEstimated {
		return ">=" + formatCount(s.LagEvents)
	}
	return formatCount(s.LagEvents)
}

func rateCell(s projStatus) string {
	if s.Throughput == nil {
		return "-"
	}
	return formatRate(*s.Throughput)
}

func workerCell(s projStatus) string {
	if s.WorkerPID == 0 {
		return "none"
	}
	return fmt.Sprintf("pid %d", s.WorkerPID)
}

func errorCell(s projStatus, short bool) string {
	if s.LastError == nil {
		return "-"
	}
	e := s.LastError.String()
	if short {
		return truncate(e, 60)
	}
	return e
}

func percent(done, total int64) string {
	if total <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%d%%", min(done*100/total, 100))
}

func (a *app) resetCommand() *cobra.Command {
	var (
		to         string
		idempotent bool
		republish  bool
	)
	cmd := &cobra.Command{
		Use:   "reset <name>",
		Short: "Move a projection's checkpoint, to replay the log into its tables",
		Long: `Move a projection's checkpoint back to the start of the log (or to --to), so
that its worker applies the events after it again. A running worker goes on
from the new checkpoint.

An event must not be applied twice to rows that already reflect it (a
count would double), so:

  - to the start, a projection whose tables this binary knows (registered
    with Tables, pgsink.Rebuildable) has them emptied, and its dead letters
    dropped, in the transaction that moves the checkpoint: the read model
    is empty until the worker has replayed the log. To keep the old rows
    serving meanwhile, use 'projections rebuild'.
  - back to the start for a projection whose tables are not known here, or
    back to any other position, is refused unless --idempotent says that
    the handlers can apply an event again harmlessly.
  - an Elasticsearch projection keeps its documents, which already reflect
    the events a reset would replay: use 'projections rebuild' for a fresh
    index (or --idempotent when its handlers write whole documents).
  - a Kafka projection registered here goes through its checkpoint in
    Kafka, which is authoritative (a reset in PostgreSQL alone would be
    undone when its worker starts): its workers must be stopped, and a
    move backwards, which publishes the events after --to again (with the
    same ce_id), needs --republish. The generic strata binary does not know
    an application's Kafka projections: reset them with the application's
    binary.
  - forwards, the events skipped are not applied at all; nothing is
    refused.
  - a process manager's log follower (named process:...) is never reset:
    it would decide again and send its commands again.`,
		Example: fmt.Sprintf(`  %[1]s projections reset order_view
  %[1]s projections reset order_view --to 812:40 --idempotent
  %[1]s projections reset order_events --to 812:40 --republish   # a Kafka projection`, a.cfg.Name),
		Args:              exactArgs(1, "one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			pos := es.Start
			if to != "start" {
				p, err := es.ParsePosition(to)
				if err != nil {
					return usagef("invalid argument %q for --to: want start or a position like 812:40", to)
				}
				pos = p
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			name := args[0]
			if err := a.known(ctx, c, name); err != nil {
				return err
			}
			if strings.HasPrefix(name, pgprocess.ProjectionPrefix) {
				return fmt.Errorf("not resetting %s: it is the log follower of a process manager, which decided and sent commands "+
					"for the events it applied; applying them again would decide again and send those commands again, as new "+
					"commands; to get past an event a process manager cannot handle, use 'projections dead-letters', or resume "+
					"it after a fix", name)
			}
			if kp, ok := a.registeredKafka(name); ok {
				return a.resetKafka(ctx, c, kp, pos, republish)
			}
			if republish {
				return usagef("--republish is for Kafka projections, and %q is not one this binary registers", name)
			}
			rcfg := pgsink.ResetConfig{Idempotent: idempotent}
			p, pgReg := a.registered(name)
			if rb, ok := p.Projection.(pgsink.Rebuildable); pgReg && ok {
				rcfg.Tables = rb.Tables()
			}
			_, elastic := a.registeredElastic(name)
			if elastic && !idempotent {
				cp, err := c.sink.Checkpoint(ctx, name)
				if err != nil {
					return a.explain(err)
				}
				if pos.Before(cp.Position) {
					return fmt.Errorf("not resetting %s from %s to %s: an Elasticsearch projection keeps its documents, which already reflect the events a reset would replay; run '%s projections rebuild %s' to build its index anew (or pass --idempotent when its handlers write whole documents)",
						name, cp.Position, positionText(pos), a.cfg.Name, name)
				}
			}
			res, err := c.sink.ResetProjection(ctx, name, pos, rcfg)
			var unsafe *pgsink.UnsafeResetError
			if errors.As(err, &unsafe) {
				return a.unsafeReset(unsafe, pgReg)
			}
			if err != nil {
				return a.explain(err)
			}
			if a.format() == formatJSON {
				cleared := []map[string]any{}
				for _, t := range res.Cleared {
					cleared = append(cleared, map[string]any{"table": t.Table, "rows": t.Rows})
				}
				return a.writeJSON(map[string]any{"name": name, "from": res.From, "to": res.To,
					"cleared": cleared, "dead_letters_dropped": res.DeadLetters})
			}
			w := a.stdout()
			fmt.Fprintf(w, "reset %s: checkpoint %s -> %s", name, res.From, res.To)
			switch {
			case len(res.Cleared) > 0:
				var parts []string
				for _, t := range res.Cleared {
					parts = append(parts, fmt.Sprintf("%s (%s rows)", t.Table, formatCount(t.Rows)))
				}
				fmt.Fprintf(w, "; emptied %s", strings.Join(parts, ", "))
				if res.DeadLetters > 0 {
					fmt.Fprintf(w, " and dropped %s dead letters", formatCount(res.DeadLetters))
				}
				fmt.Fprintln(w, "; its worker builds them again from the start of the log")
			case res.To.Before(res.From):
				fmt.Fprintln(w, "; its worker applies the events after it again")
			default:
				fmt.Fprintln(w, "; its worker goes on from there")
			}
			if cp, err := c.sink.Checkpoint(ctx, name); err == nil && cp.State == projections.StateStalled {
				fmt.Fprintf(w, "%s is still stalled: '%s projections resume %s' lets its worker go on\n", name, a.cfg.Name, name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "start", "the new checkpoint: start, or a position like 812:40")
	cmd.Flags().BoolVar(&republish, "republish", false, "for a Kafka projection: allow moving it back, which publishes the events after --to again")
	cmd.Flags().BoolVar(&idempotent, "idempotent", false, "the handlers can apply an event again harmlessly: allow replaying into rows that already reflect it")
	return cmd
}

// unsafeReset explains a reset that was refused and what to do instead.
func (a *app) unsafeReset(e *pgsink.UnsafeResetError, registered bool) error {
	name, bin := e.Projection, a.cfg.Name
	if e.To.IsZero() {
		how := fmt.Sprintf("this binary does not know its tables (register it with Tables, pgsink.Rebuildable, to have them emptied); run '%s projections rebuild %s' from the application's binary", bin, name)
		if registered {
			how = fmt.Sprintf("the projection does not name its tables (pgsink.Rebuildable: Tables and Setup), so they cannot be emptied first; name them and reset again, or run '%s projections rebuild %s'", bin, name)
		}
		return fmt.Errorf("not resetting %s from %s to the start: replaying into its tables would apply every event a second time (a count would double); %s, or pass --idempotent if its handlers can apply an event again harmlessly",
			name, e.From, how)
	}
	return fmt.Errorf("not resetting %s from %s back to %s: its tables already reflect the events after %s, which would be applied a second time; pass --idempotent if its handlers can apply an event again harmlessly, or reset to the start (or run '%s projections rebuild %s') to build them anew",
		name, e.From, e.To, e.To, bin, name)
}

func positionText(p es.Position) string {
	if p.IsZero() {
		return "the start"
	}
	return p.String()
}

func (a *app) pauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pause <name>",
		Short: "Pause a projection: its worker finishes its batch and waits",
		Example: fmt.Sprintf(`  %[1]s projections pause order_view
  %[1]s projections resume order_view`, a.cfg.Name),
		Args:              exactArgs(1, "one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.setState(cmd.Context(), args[0], projections.StatePaused)
		},
	}
}

func (a *app) resumeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resume <name>",
		Short: "Resume a paused or stalled projection",
		Long: `Resume a paused or stalled projection, after fixing the cause of a stall or
moving the checkpoint past the event. A paused worker goes on by itself. A
stalled projection's worker is started again by the process that runs it
('projections run', or an application's projections.Runner), which notices
within a second.`,
		Example:           fmt.Sprintf(`  %[1]s projections resume order_view`, a.cfg.Name),
		Args:              exactArgs(1, "one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.setState(cmd.Context(), args[0], projections.StateRunning)
		},
	}
}

func (a *app) setState(ctx context.Context, name string, state projections.State) error {
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := a.known(ctx, c, name); err != nil {
		return err
	}
	before, err := c.sink.Checkpoint(ctx, name)
	if err != nil {
		return err
	}
	if state == projections.StatePaused {
		err = projections.Pause(ctx, c.sink, name)
	} else {
		err = projections.Resume(ctx, c.sink, name)
	}
	if err != nil {
		return err
	}
	if a.format() == formatJSON {
		return a.writeJSON(map[string]any{"name": name, "state": state, "previous_state": before.State, "checkpoint": before.Position})
	}
	w := a.stdout()
	switch {
	case state == projections.StatePaused:
		fmt.Fprintf(w, "paused %s at %s (was %s); its worker finishes the batch in flight and waits\n", name, before.Position, before.State)
	case before.State == projections.StateStalled:
		fmt.Fprintf(w, "resumed %s (was stalled at %s); a running worker starts again within a second, or start one: %s projections run %s\n", name, failureText(before.Failure), a.cfg.Name, name)
	default:
		fmt.Fprintf(w, "resumed %s at %s (was %s)\n", name, before.Position, before.State)
	}
	return nil
}

func failureText(f *projections.Failure) string {
	if f == nil {
		return "an unknown event"
	}
	return f.String()
}
