package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
)

func (a *app) processesCommand() *cobra.Command {
	cmd := group("processes", "List process managers and their instances: running, completed, failed, stuck",
		fmt.Sprintf(`  %[1]s processes list
  %[1]s processes list checkout --status stuck
  %[1]s processes show checkout order-42 -o json`, a.cfg.Name),
		a.processesListCommand(), a.processesShowCommand())
	cmd.Aliases = []string{"process"}
	return cmd
}

// processSummary is a process manager as processes list shows it.
type processSummary struct {
	Name  string
	Stats pgprocess.Stats
}

func (a *app) processesListCommand() *cobra.Command {
	var f pgprocess.ListFilter
	cmd := &cobra.Command{
		Use:   "list [name]",
		Short: "List process managers, or the instances of one",
		Long: fmt.Sprintf(`Without a name, list the process managers that have rows in --read-schema
(default: --schema) with their counts: instances running, completed, failed
and stuck; commands pending, retrying and rejected; deadlines pending and
overdue; events skipped because they correlated to no running instance.

With a name, list its instances, newest first: status, step, the last event
handed to it, and why it is stuck, if it is. --status picks running,
completed, failed or stuck instances; with --status and no name, the
instances of every process manager are listed.

An instance is stuck when it failed (its state no longer decodes, its
decide failed); when a command of it has failed %d times or more and is
still retried; when a command of it was rejected and no decision handled
the rejection; or when a deadline of it is pending and was due more than
%v ago (no runner fires it). See 'processes show' for its commands and
deadlines.`, pgprocess.StuckAttemptsDefault, pgprocess.StuckGraceDefault),
		Example: fmt.Sprintf(`  %[1]s processes list
  %[1]s processes list checkout --status stuck --limit 20
  %[1]s processes list --status failed -o json`, a.cfg.Name),
		Args: rangeArgs(0, 1, "at most a process manager's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := (pgprocess.ListFilter{Status: f.Status}).Validate(); err != nil {
				return usagef("invalid --status %q: want running, completed, failed or stuck", f.Status)
			}
			if f.Limit < 0 {
				return usagef("invalid --limit %d: want 1 or more (default %d)", f.Limit, pgprocess.ListLimitDefault)
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			names, err := a.processNames(ctx, c)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if err := a.knownProcess(names, args[0]); err != nil {
					return err
				}
				names = args
			} else if f.Status == "" && f.Limit == 0 {
				return a.processSummaries(ctx, c, names)
			}
			all := []pgprocess.Instance{}
			for _, n := range names {
				list, err := pgprocess.ListInstances(ctx, c.sink, n, f)
				if err != nil {
					return a.explainProcesses(err)
				}
				all = append(all, list...)
			}
			if a.format() == formatJSON {
				return a.writeJSON(all)
			}
			if len(all) == 0 && a.format() == formatTable {
				what := "instances"
				if f.Status != "" {
					what = f.Status + " instances"
				}
				fmt.Fprintf(a.stdout(), "no %s of %s in schema %s\n", what, strings.Join(names, ", "), a.settings().ReadSchema)
				return nil
			}
			t := a.newTable("PROCESS", "ID", "STATUS", "STEP", "LAST EVENT", "CREATED", "UPDATED", "STUCK")
			for _, in := range all {
				t.row(in.Process, in.ID, in.Status, strconv.FormatInt(in.Step, 10), lastEvent(in.LastEvent),
					formatTime(in.CreatedAt), formatTime(in.UpdatedAt), orDash(truncate(in.Stuck, 120)))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&f.Status, "status", "", "only instances that are running, completed, failed or stuck")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, fmt.Sprintf("at most this many instances of each process manager (default %d)", pgprocess.ListLimitDefault))
	return cmd
}

func (a *app) processSummaries(ctx context.Context, c *conn, names []string) error {
	all := []processSummary{}
	for _, n := range names {
		st, err := pgprocess.ReadStats(ctx, c.sink, n)
		if err != nil {
			return a.explainProcesses(err)
		}
		all = append(all, processSummary{Name: n, Stats: st})
	}
	if a.format() == formatJSON {
		return a.writeJSON(all)
	}
	if len(all) == 0 && a.format() == formatTable {
		fmt.Fprintf(a.stdout(), "no process manager has rows in schema %s\n", a.settings().ReadSchema)
		return nil
	}
	t := a.newTable("NAME", "RUNNING", "COMPLETED", "FAILED", "STUCK", "COMMANDS PENDING", "RETRYING", "REJECTED",
		"DEADLINES PENDING", "OVERDUE", "SKIPPED EVENTS")
	for _, p := range all {
		s := p.Stats
		t.row(p.Name, formatCount(s.Running), formatCount(s.Completed), formatCount(s.Failed), formatCount(s.Stuck),
			formatCount(s.PendingCommands), formatCount(s.RetryingCommands), formatCount(s.RejectedCommands),
			formatCount(s.PendingDeadlines), formatCount(s.OverdueDeadlines), formatCount(s.Uncorrelated+s.Ignored))
	}
	t.flush()
	return nil
}

func (a *app) processesShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show <name> <id>",
		Short: "Show a process instance: state, last event, commands, deadlines, why it is stuck",
		Long: `Show instance <id> of process manager <name>: its status, step and state,
the last event handed to it, why it failed or is stuck (see 'processes list
--help'), every command it decided (ID, status pending, dispatched or
rejected, attempts, last error or rejection, next attempt, when it was
created and dispatched) and every deadline it set (due time, status and
what became of it).`,
		Example: fmt.Sprintf("  %[1]s processes show checkout order-42\n  %[1]s processes show checkout order-42 -o json", a.cfg.Name),
		Args:    exactArgs(2, "a process manager's name and an instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			name, id := args[0], args[1]
			in, err := pgprocess.ReadInstance(ctx, c.sink, name, id)
			if errors.Is(err, pgprocess.ErrNotFound) {
				names, nerr := a.processNames(ctx, c)
				if nerr != nil {
					return nerr
				}
				if err := a.knownProcess(names, name); err != nil {
					return err
				}
				return usagef("process manager %s has no instance %q in schema %s; see '%s processes list %s'",
					name, id, a.settings().ReadSchema, a.cfg.Name, name)
			}
			if err != nil {
				return a.explainProcesses(err)
			}
			if a.format() == formatJSON {
				return a.writeJSON(in)
			}
			a.printInstance(in)
			return nil
		},
	}
}

func (a *app) printInstance(in pgprocess.Instance) {
	w := a.stdout()
	fmt.Fprintf(w, "process:     %s\n", in.Process)
	fmt.Fprintf(w, "id:          %s\n", in.ID)
	fmt.Fprintf(w, "status:      %s\n", in.Status)
	if in.Stuck != "" {
		fmt.Fprintf(w, "stuck:       %s\n", in.Stuck)
	}
	if in.Error != "" && !strings.Contains(in.Stuck, in.Error) {
		fmt.Fprintf(w, "error:       %s\n", in.Error)
	}
	fmt.Fprintf(w, "step:        %d\n", in.Step)
	fmt.Fprintf(w, "last event:  %s\n", lastEvent(in.LastEvent))
	fmt.Fprintf(w, "created:     %s\n", formatTime(in.CreatedAt))
	fmt.Fprintf(w, "updated:     %s\n", formatTime(in.UpdatedAt))
	fmt.Fprintf(w, "state:       %s\n", orDash(string(in.State)))
	fmt.Fprintf(w, "\ncommands:\n")
	if len(in.Commands) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		t := a.newTable("STEP", "TYPE", "ID", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "CREATED", "DISPATCHED", "ERROR")
		for _, c := range in.Commands {
			next, dispatched := "-", "-"
			if c.Status == pgprocess.CommandPending {
				next = formatTime(c.NextAttemptAt)
			}
			if c.DispatchedAt != nil {
				dispatched = formatTime(*c.DispatchedAt)
			}
			errText := c.LastError
			if c.Status == pgprocess.CommandRejected {
				if c.HandledStep > 0 {
					errText = fmt.Sprintf("rejected, handled at step %d: %s", c.HandledStep, errText)
				} else {
					errText = "rejected, not handled: " + errText
				}
			}
			t.row(strconv.FormatInt(c.Step, 10), c.Type, c.ID, c.Status, strconv.Itoa(c.Attempts), next,
				formatTime(c.CreatedAt), dispatched, orDash(truncate(errText, 160)))
		}
		t.flush()
	}
	fmt.Fprintf(w, "\ndeadlines:\n")
	if len(in.Deadlines) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	t := a.newTable("STEP", "NAME", "DUE", "STATUS", "OUTCOME", "CLOSED")
	for _, d := range in.Deadlines {
		closed := "-"
		if d.ClosedAt != nil {
			closed = formatTime(*d.ClosedAt)
		}
		t.row(strconv.FormatInt(d.Step, 10), d.Name, formatTime(d.DueAt), d.Status, orDash(d.Outcome), closed)
	}
	t.flush()
}

func lastEvent(ev *pgprocess.EventRef) string {
	if ev == nil {
		return "-"
	}
	return ev.Type + " at " + ev.Position.String()
}

// processNames lists the process managers with rows in the read schema.
func (a *app) processNames(ctx context.Context, c *conn) ([]string, error) {
	names, err := pgprocess.ListProcesses(ctx, c.sink)
	if err != nil {
		return nil, a.explainProcesses(err)
	}
	return names, nil
}

// knownProcess checks that name is among names, the process managers with
// rows.
func (a *app) knownProcess(names []string, name string) error {
	if slices.Contains(names, name) {
		return nil
	}
	if len(names) == 0 {
		return usagef("unknown process manager %q: no process manager has rows in schema %s yet", name, a.settings().ReadSchema)
	}
	return usagef("unknown process manager %q; process managers in schema %s: %s", name, a.settings().ReadSchema, strings.Join(names, ", "))
}

// explainProcesses turns a missing table into advice.
func (a *app) explainProcesses(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.UndefinedTable || pgErr.Code == pgerrcode.InvalidSchemaName) {
		return fmt.Errorf("schema %q has no process manager tables: run '%s migrate' first (%w)", a.settings().ReadSchema, a.cfg.Name, err)
	}
	return err
}
