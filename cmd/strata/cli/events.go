package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/es"
)

func (a *app) eventsCommand() *cobra.Command {
	return group("events", "Follow the global log",
		fmt.Sprintf("  %[1]s events tail\n  %[1]s events tail --from start --type OrderPlaced --follow=false", a.cfg.Name),
		a.eventsTailCommand())
}

func (a *app) eventsTailCommand() *cobra.Command {
	var (
		from   string
		types  []string
		follow bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the events of the global log as they are committed",
		Long: `Print the events of the global log in log order, as readers see them.

By default tail starts at the head of the log and follows it until
interrupted (Ctrl-C), printing each event as it is committed. --from start
replays the whole log first; --from 812:40 starts after that position (as
printed in the POSITION column or a command result). --follow=false stops at
the head. With -o json every event is one JSON object on a line of its own.`,
		Example: fmt.Sprintf(`  %[1]s events tail
  %[1]s events tail --from start --follow=false --type OrderPlaced --type OrderShipped
  %[1]s events tail --from 812:40 --limit 100 -o json | jq .data`, a.cfg.Name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("invalid argument %d for --limit: want 0 (no limit) or more", limit)
			}
			after, fromHead, err := parseTailFrom(from)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			if fromHead {
				if after, err = c.store.Head(ctx); err != nil {
					return a.explain(err)
				}
			}
			out := &tailOutput{p: a.newTailPrinter(), types: types, limit: limit}
			if !follow {
				return a.tailToHead(ctx, c.store, after, out)
			}
			return a.tailFollow(ctx, c.store, after, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "head", "where to start: head (new events only), start, or after a position like 812:40")
	f.StringSliceVar(&types, "type", nil, "only events of this type (repeat or separate with commas)")
	f.BoolVarP(&follow, "follow", "f", true, "keep printing events as they are committed")
	f.IntVar(&limit, "limit", 0, "stop after this many events (default: no limit)")
	return cmd
}

// parseTailFrom reads the --from of events tail: after is the position to
// start after, and fromHead says to start at the head of the log instead.
func parseTailFrom(from string) (after es.Position, fromHead bool, err error) {
	switch from {
	case "head":
		return es.Position{}, true, nil
	case "start", "0":
		return es.Start, false, nil
	}
	p, err := es.ParsePosition(from)
	if err != nil {
		return es.Position{}, false, usagef("invalid argument %q for --from: want start, head or a position like 812:40", from)
	}
	return p, false, nil
}

// tailOutput prints the events events tail is given that are of one of
// types (any when empty), up to limit of them (no limit when 0).
type tailOutput struct {
	p     *tailPrinter
	types []string
	limit int
	n     int
}

// emit prints recs and reports whether to go on: false once limit events
// were printed.
func (o *tailOutput) emit(recs []es.Record) bool {
	for _, r := range recs {
		if len(o.types) > 0 && !slices.Contains(o.types, r.Type) {
			continue
		}
		o.p.print(r)
		o.n++
		if o.limit > 0 && o.n >= o.limit {
			o.p.flush()
			return false
		}
	}
	o.p.flush()
	return true
}

// tailToHead prints the events after after up to the head of the log.
func (a *app) tailToHead(ctx context.Context, store es.Store, after es.Position, out *tailOutput) error {
	for {
		recs, err := store.ReadAll(ctx, after, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return a.explain(err)
		}
		if len(recs) == 0 || !out.emit(recs) {
			return nil
		}
		after = recs[len(recs)-1].Position
	}
}

// tailFollow prints the events after after as they are committed, until
// ctx ends or the limit is reached.
func (a *app) tailFollow(ctx context.Context, store es.Store, after es.Position, out *tailOutput) error {
	if a.tty() {
		fmt.Fprintf(a.cfg.Stderr, "following the log after %s (Ctrl-C to stop)\n", after)
	}
	for recs, err := range store.Subscribe(ctx, es.SubscribeOptions{After: after}) {
		if err != nil {
			return a.explain(err)
		}
		if !out.emit(recs) {
			return nil
		}
	}
	return nil // interrupted
}

// tailPrinter prints records as they come: a table, tab-separated lines
// or one JSON object per line.
type tailPrinter struct {
	a      *app
	format string
	tw     *tabwriter.Writer
	header bool
}

func (a *app) newTailPrinter() *tailPrinter {
	p := &tailPrinter{a: a, format: a.format()}
	if p.format == formatTable {
		p.tw = tabwriter.NewWriter(a.stdout(), 10, 4, 2, ' ', 0)
	}
	return p
}

func (p *tailPrinter) print(r es.Record) {
	w := p.a.stdout()
	switch p.format {
	case formatJSON:
		b, _ := json.Marshal(toJSON(r))
		fmt.Fprintf(w, "%s\n", b)
	case formatLines:
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Position, r.Stream, r.Version, r.Type, formatTime(r.RecordedAt), oneLineJSON(r.Data))
	default:
		if !p.header {
			fmt.Fprintln(p.tw, "POSITION\tSTREAM\tVERSION\tTYPE\tRECORDED\tDATA")
			p.header = true
		}
		fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Position, r.Stream, strconv.FormatInt(r.Version, 10), r.Type,
			formatTime(r.RecordedAt), truncate(oneLineJSON(r.Data), 60))
	}
}

func (p *tailPrinter) flush() {
	if p.tw != nil {
		p.tw.Flush()
	}
}

func oneLineJSON(b []byte) string {
	var out []byte
	for _, c := range b {
		if c != '\n' && c != '\r' && c != '\t' {
			out = append(out, c)
		}
	}
	return string(out)
}
