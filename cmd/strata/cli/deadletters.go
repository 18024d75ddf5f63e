package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/projections"
)

func (a *app) deadLettersCommand() *cobra.Command {
	cmd := group("dead-letters", "List, retry or skip the events a projection parked",
		fmt.Sprintf(`  %[1]s projections dead-letters list order_view
  %[1]s projections dead-letters retry order_view --all
  %[1]s projections dead-letters skip order_view 0190c1a2-…`, a.cfg.Name),
		a.deadListCommand(), a.deadRetryCommand(), a.deadSkipCommand())
	cmd.Aliases = []string{"dead-letter", "dlq"}
	return cmd
}

// deadLetterJSON is a dead letter as -o json prints it.
type deadLetterJSON projections.DeadLetter

func (d deadLetterJSON) MarshalJSON() ([]byte, error) {
	type out struct {
		Projection string     `json:"projection"`
		Event      recordJSON `json:"event"`
		Error      string     `json:"error"`
		ParkedAt   time.Time  `json:"parked_at"`
	}
	return json.Marshal(out{d.Projection, toJSON(d.Record), d.Failure.Error, d.Failure.At})
}

func (a *app) deadListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list [name]",
		Short: "List parked events, of one projection or of all",
		Example: fmt.Sprintf(`  %[1]s projections dead-letters list
  %[1]s projections dead-letters list order_view -o json`, a.cfg.Name),
		Args:              rangeArgs(0, 1, "at most one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			name := ""
			if len(args) == 1 {
				name = args[0]
				if err := a.known(ctx, c, name); err != nil {
					return err
				}
			}
			ds, err := c.sink.DeadLetters(ctx, name)
			if err != nil {
				return a.explain(err)
			}
			if a.format() == formatJSON {
				out := make([]deadLetterJSON, len(ds))
				for i, d := range ds {
					out[i] = deadLetterJSON(d)
				}
				return a.writeJSON(out)
			}
			t := a.newTable("PROJECTION", "EVENT ID", "POSITION", "STREAM", "VERSION", "TYPE", "PARKED", "ERROR")
			for _, d := range ds {
				e := d.Failure.Error
				if !t.lines {
					e = truncate(e, 60)
				}
				t.row(d.Projection, d.Record.ID.String(), d.Record.Position.String(), d.Record.Stream,
					strconv.FormatInt(d.Record.Version, 10), d.Record.Type, formatTime(d.Failure.At), e)
			}
			t.flush()
			return nil
		},
	}
}

// selectDead parses the event IDs of retry and skip.
func selectDead(args []string, all bool) ([]uuid.UUID, error) {
	if len(args) == 1 && !all {
		return nil, usagef("name the dead letters by event ID, or pass --all")
	}
	if len(args) > 1 && all {
		return nil, usagef("pass event IDs or --all, not both")
	}
	var ids []uuid.UUID
	for _, s := range args[1:] {
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, usagef("invalid event ID %q: %v", s, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (a *app) deadRetryCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "retry <name> [event-id...]",
		Short: "Hand parked events to the projection again",
		Long: `Hand parked events to the projection's handler again, one at a time and in
log order, each in a transaction that also removes it from the dead letters.
The first that fails again stays parked, and the command stops there.
Retried events are applied after the events that followed them in the log:
retry when the projection's handling of them does not depend on order.`,
		Example: fmt.Sprintf(`  %[1]s projections dead-letters retry order_view --all
  %[1]s projections dead-letters retry order_view 0190c1a2-7f55-7a2b-9d57-0c1ba3a4b5c6`, a.cfg.Name),
		Args:              minArgs(1, "a projection name and event IDs (or --all)"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := selectDead(args, all)
			if err != nil {
				return err
			}
			sel, err := a.selectProjections(args[:1])
			if err != nil {
				return err
			}
			if len(sel.pg) == 0 {
				return usagef("cannot retry the dead letters of %s: retrying is for PostgreSQL projections; "+
					"skip them, or rebuild the projection once its handler is fixed", args[0])
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			return a.retry(ctx, c, sel.pg[0], ids)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter of the projection")
	return cmd
}

func (a *app) retry(ctx context.Context, c *conn, p Projection, ids []uuid.UUID) error {
	name := p.name()
	ds, err := c.sink.DeadLetters(ctx, name, ids...)
	if err != nil {
		return a.explain(err)
	}
	if err := missing(name, ids, ds); err != nil {
		return err
	}
	w := a.stdout()
	for i, d := range ds {
		if err := c.sink.RetryDeadLetter(ctx, a.cfg.Registry, p.Projection, d); err != nil {
			r := d.Record
			return fmt.Errorf("retry %s@%d (event %s, type %q) failed again; it stays parked (%d of %d retried): %w",
				r.Stream, r.Version, r.ID, r.Type, i, len(ds), err)
		}
		fmt.Fprintf(w, "retried %s@%d (%s, position %s)\n", d.Record.Stream, d.Record.Version, d.Record.Type, d.Record.Position)
	}
	fmt.Fprintf(w, "%s: %d dead letter(s) retried\n", name, len(ds))
	return nil
}

// missing reports the IDs that name no dead letter of the projection.
func missing(name string, ids []uuid.UUID, ds []projections.DeadLetter) error {
	for _, id := range ids {
		found := false
		for _, d := range ds {
			if d.Record.ID == id {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s has no dead letter with event ID %s (see 'projections dead-letters list %s')", name, id, name)
		}
	}
	return nil
}

func (a *app) deadSkipCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "skip <name> [event-id...]",
		Short: "Drop parked events: the projection will not apply them",
		Long: `Remove parked events from the dead letters for good: the projection will not
apply them. The events stay in the log. Its checkpoint is already past them.`,
		Example: fmt.Sprintf(`  %[1]s projections dead-letters skip order_view 0190c1a2-7f55-7a2b-9d57-0c1ba3a4b5c6
  %[1]s projections dead-letters skip order_view --all`, a.cfg.Name),
		Args:              minArgs(1, "a projection name and event IDs (or --all)"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := selectDead(args, all)
			if err != nil {
				return err
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
			ds, err := c.sink.DeadLetters(ctx, name, ids...)
			if err != nil {
				return a.explain(err)
			}
			if err := missing(name, ids, ds); err != nil {
				return err
			}
			del := make([]uuid.UUID, len(ds))
			for i, d := range ds {
				del[i] = d.Record.ID
			}
			if _, err := c.sink.DeleteDeadLetters(ctx, name, del); err != nil {
				return err
			}
			for _, d := range ds {
				fmt.Fprintf(a.stdout(), "skipped %s@%d (%s, position %s)\n", d.Record.Stream, d.Record.Version, d.Record.Type, d.Record.Position)
			}
			fmt.Fprintf(a.stdout(), "%s: %d dead letter(s) skipped\n", name, len(ds))
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "skip every dead letter of the projection")
	return cmd
}
