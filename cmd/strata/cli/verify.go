package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/pgsink"
)

func (a *app) verifyCommand() *cobra.Command {
	var (
		every   time.Duration
		onError string
		samples int
		ignore  []string
	)
	cmd := &cobra.Command{
		Use:   "verify <name>",
		Short: "Compare a projection's read model with a rebuild of it, to find drift",
		Long: `Rebuild a projection from the start of the log into a shadow generation
beside the live one, compare the two at the same log position, report the
differences, and drop the shadow. The live read model keeps serving and its
worker keeps running; nothing of it changes.

Rows are matched by primary key and compared column by column: a row the
rebuild has and the live table lacks is missing, one only the live table
has is extra, and one in both with other values is different. Any
difference is a bug (a handler that depends on something besides the
events, or a write outside the projection); 'projections rebuild' replaces
the live model with the rebuilt one.

Both sides are compared at the live checkpoint: the shadow is built up to
it, and the live tables are read in the same snapshot as the checkpoint,
so events appended meanwhile do not show as drift.

Exit codes: 0 the read model equals its rebuild, 1 it has drifted (or the
verification failed), 2 usage error.`,
		Example: fmt.Sprintf(`  %[1]s projections verify order_view
  %[1]s projections verify order_view -o json
  %[1]s projections verify order_view --ignore order_view.updated_at`, a.cfg.Name),
		Args:              exactArgs(1, "one projection name"),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			if every < 0 {
				return usagef("--progress-interval must not be negative")
			}
			if samples < 1 {
				return usagef("--samples must be 1 or more")
			}
			if _, ok := a.registeredKafka(args[0]); ok {
				return usagef("projection %q cannot be verified: it is a Kafka projection, which publishes messages and keeps no read model to compare with a rebuild", args[0])
			}
			pg, ep, err := a.oneProjection(args[0], onError)
			if err != nil {
				return err
			}
			var rb pgsink.Rebuildable
			if pg != nil {
				var ok bool
				if rb, ok = pg.Projection.(pgsink.Rebuildable); !ok {
					return usagef("projection %q cannot be verified: it does not name its tables (pgsink.Rebuildable: Tables and Setup)", args[0])
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
				return a.verifyElastic(ctx, c, *ep, elasticsink.VerifyConfig{ProgressEvery: every, Samples: samples, Ignore: ignore})
			}
			return a.verify(ctx, c, *pg, rb, pgsink.VerifyConfig{ProgressEvery: every, Samples: samples, Ignore: ignore})
		},
	}
	cmd.Flags().StringVar(&onError, "on-error", "", "what the rebuild does with an event the projection cannot handle: stop or dead-letter (default: as the application configured, else stop)")
	cmd.Flags().DurationVar(&every, "progress-interval", 0, "time between progress reports (default: 200ms on a terminal, 5s otherwise)")
	cmd.Flags().IntVar(&samples, "samples", pgsink.VerifySamplesDefault, "differences shown per table (all are counted)")
	cmd.Flags().StringSliceVar(&ignore, "ignore", nil, "a column not to compare, as table.column (repeatable): one a handler fills with the time, say; for an Elasticsearch projection, a top-level field")
	return cmd
}

func (a *app) verify(ctx context.Context, c *conn, p Projection, rb pgsink.Rebuildable, vcfg pgsink.VerifyConfig) error {
	name := p.name()
	bar := a.newProgressBar(name)
	defer a.logs.attach(nil)
	vcfg.Worker = p.Worker
	if vcfg.Worker.Logger == nil {
		vcfg.Worker.Logger = c.log
	}
	if a.format() != formatJSON {
		vcfg.Progress = bar.update
	}
	d, err := c.sink.Verify(ctx, c.store, a.cfg.Registry, rb, vcfg)
	bar.finish()
	if err != nil {
		return a.verifyFailed(name, err)
	}
	if a.format() == formatJSON {
		if err := a.writeJSON(d); err != nil {
			return err
		}
	} else {
		writeDrift(a.stdout(), d)
	}
	if d.Equal() {
		return nil
	}
	var parts []string
	for _, t := range d.Tables {
		if n := t.Missing + t.Extra + t.Different; n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d missing, %d extra, %d different", t.Table, t.Missing, t.Extra, t.Different))
		}
	}
	return fmt.Errorf("%s has drifted from its rebuild at %s: %s rows differ (%s); find the cause, then '%s projections rebuild %s' replaces the live tables",
		name, d.Position, formatCount(d.Differences()), strings.Join(parts, "; "), a.cfg.Name, name)
}

// writeDrift prints a verification's result for people.
func writeDrift(w io.Writer, d pgsink.Drift) {
	var rows int64
	for _, t := range d.Tables {
		rows += t.LiveRows
	}
	if d.Equal() {
		fmt.Fprintf(w, "%s equals its rebuild at %s: %s rows in %d tables, %s events\n",
			d.Projection, d.Position, formatCount(rows), len(d.Tables), formatCount(d.Events))
		return
	}
	fmt.Fprintf(w, "%s differs from its rebuild at %s (%s events):\n", d.Projection, d.Position, formatCount(d.Events))
	for _, t := range d.Tables {
		fmt.Fprintf(w, "  %s: %s live rows, %s rebuilt; %d missing, %d extra, %d different\n",
			t.Table, formatCount(t.LiveRows), formatCount(t.RebuiltRows), t.Missing, t.Extra, t.Different)
		for _, s := range t.Samples {
			key := fmt.Sprintf("(%s)=(%s)", strings.Join(t.Key, ", "), strings.Join(s.Key, ", "))
			switch s.Kind {
			case projections.DiffMissing:
				fmt.Fprintf(w, "    missing    %s: rebuilt %s\n", key, s.Rebuilt)
			case projections.DiffExtra:
				fmt.Fprintf(w, "    extra      %s: live %s\n", key, s.Live)
			default:
				fmt.Fprintf(w, "    different  %s: %s\n", key, columnDiffs(s))
			}
		}
		if n := t.Missing + t.Extra + t.Different; n > int64(len(t.Samples)) {
			fmt.Fprintf(w, "    ... and %s more\n", formatCount(n-int64(len(t.Samples))))
		}
	}
}

// columnDiffs shows the differing columns of a row as "col live X,
// rebuilt Y".
func columnDiffs(s pgsink.RowDiff) string {
	var live, reb map[string]json.RawMessage
	_ = json.Unmarshal(s.Live, &live)
	_ = json.Unmarshal(s.Rebuilt, &reb)
	var parts []string
	for _, c := range s.Columns {
		parts = append(parts, fmt.Sprintf("%s live %s, rebuilt %s", c, valueText(live, c), valueText(reb, c)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func valueText(m map[string]json.RawMessage, col string) string {
	v, ok := m[col]
	if !ok {
		return "(no column)"
	}
	return truncate(string(v), 80)
}

// verifyFailed explains a verification that could not be done.
func (a *app) verifyFailed(name string, err error) error {
	var stalled *projections.StalledError
	switch {
	case errors.As(err, &stalled):
		return fmt.Errorf("the rebuild of %s for verification stalled at %s; fix the projection, or verify with --on-error dead-letter",
			name, stalled.Failure)
	case errors.Is(err, projections.ErrVerifyRunning):
		return fmt.Errorf("a verification of %s is already running; wait for it to finish", name)
	default:
		return a.explain(err)
	}
}

// verifyElastic verifies an Elasticsearch projection: documents by _id.
func (a *app) verifyElastic(ctx context.Context, c *conn, p ElasticProjection, vcfg elasticsink.VerifyConfig) error {
	name := p.name()
	s, err := c.elasticSink()
	if err != nil {
		return err
	}
	bar := a.newProgressBar(name)
	defer a.logs.attach(nil)
	vcfg.Worker = p.Worker
	if vcfg.Worker.Logger == nil {
		vcfg.Worker.Logger = c.log
	}
	if a.format() != formatJSON {
		vcfg.Progress = bar.update
	}
	d, err := s.Verify(ctx, c.store, a.cfg.Registry, p.Projection, vcfg)
	bar.finish()
	if err != nil {
		return a.verifyFailed(name, err)
	}
	w := a.stdout()
	switch {
	case a.format() == formatJSON:
		if err := a.writeJSON(d); err != nil {
			return err
		}
	case d.Equal():
		fmt.Fprintf(w, "%s equals its rebuild at %s: %s documents in %s, %s events\n",
			name, d.Position, formatCount(d.LiveDocs), d.Index, formatCount(d.Events))
	default:
		fmt.Fprintf(w, "%s differs from its rebuild at %s (%s events): %s live documents in %s, %s rebuilt; %d missing, %d extra, %d different\n",
			name, d.Position, formatCount(d.Events), formatCount(d.LiveDocs), d.Index, formatCount(d.RebuiltDocs), d.Missing, d.Extra, d.Different)
		for _, x := range d.Samples {
			switch x.Kind {
			case projections.DiffMissing:
				fmt.Fprintf(w, "    missing    %s: rebuilt %s\n", x.ID, truncate(string(x.Rebuilt), 200))
			case projections.DiffExtra:
				fmt.Fprintf(w, "    extra      %s: live %s\n", x.ID, truncate(string(x.Live), 200))
			default:
				fmt.Fprintf(w, "    different  %s: %s\n", x.ID, columnDiffs(pgsink.RowDiff{Columns: x.Fields, Live: x.Live, Rebuilt: x.Rebuilt}))
			}
		}
		if n := d.Differences(); n > int64(len(d.Samples)) {
			fmt.Fprintf(w, "    ... and %s more\n", formatCount(n-int64(len(d.Samples))))
		}
	}
	if d.Equal() {
		return nil
	}
	return fmt.Errorf("%s has drifted from its rebuild at %s: %s documents differ (%d missing, %d extra, %d different); find the cause, then '%s projections rebuild %s' replaces the index",
		name, d.Position, formatCount(d.Differences()), d.Missing, d.Extra, d.Different, a.cfg.Name, name)
}
