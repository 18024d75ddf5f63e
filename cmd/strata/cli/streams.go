package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

func (a *app) streamsCommand() *cobra.Command {
	return group("streams", "List streams and read their events",
		fmt.Sprintf("  %[1]s streams list --prefix order-\n  %[1]s streams read order-42", a.cfg.Name),
		a.streamsListCommand(), a.streamsReadCommand())
}

type streamInfo struct {
	Stream   string    `json:"stream"`
	Version  int64     `json:"version"`
	LastAt   time.Time `json:"last_recorded_at"`
	LastType string    `json:"last_type"`
}

func (a *app) streamsListCommand() *cobra.Command {
	var (
		prefix, after string
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the streams of the PostgreSQL event store in the order of their names",
		Long: `List the streams of the PostgreSQL event store in the order of their names,
with each stream's version and last event. --prefix keeps the streams whose
name starts with it (no character is special); --after pages: pass the last
name of the previous page.`,
		Example: fmt.Sprintf(`  %[1]s streams list
  %[1]s streams list --prefix order- --limit 10
  %[1]s streams list --prefix order- --limit 10 --after order-0042   # the next page
  %[1]s streams list -o json | jq -r '.[].stream'`, a.cfg.Name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit <= 0 {
				return usagef("invalid argument %d for --limit: want 1 or more", limit)
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			if c.pg == nil {
				return errors.New("streams list needs the PostgreSQL event store; EventStoreDB lists its streams in its own UI")
			}
			streams, err := c.pg.ListStreams(ctx, pgstore.ListStreamsOptions{Prefix: prefix, After: after, Limit: limit})
			if err != nil {
				return a.explain(err)
			}
			list := make([]streamInfo, 0, len(streams))
			for _, s := range streams {
				list = append(list, streamInfo{Stream: s.ID, Version: s.Version, LastAt: s.LastRecordedAt, LastType: s.LastType})
			}
			if a.format() == formatJSON {
				return a.writeJSON(list)
			}
			t := a.newTable("STREAM", "VERSION", "LAST EVENT", "LAST WRITTEN")
			for _, s := range list {
				t.row(s.Stream, strconv.FormatInt(s.Version, 10), s.LastType, formatTime(s.LastAt))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only streams whose name starts with this")
	cmd.Flags().StringVar(&after, "after", "", "only streams whose name sorts after this (the last of the previous page)")
	cmd.Flags().IntVar(&limit, "limit", pgstore.ListStreamsLimitDefault, "list at most this many streams")
	return cmd
}

// recordJSON is how records are printed as JSON.
type recordJSON struct {
	ID         string          `json:"id"`
	Stream     string          `json:"stream"`
	Version    int64           `json:"version"`
	Position   es.Position     `json:"position"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	Metadata   es.Metadata     `json:"metadata,omitempty"`
	RecordedAt time.Time       `json:"recorded_at"`
}

func toJSON(r es.Record) recordJSON {
	data := json.RawMessage(r.Data)
	if !json.Valid(data) {
		data, _ = json.Marshal(string(r.Data))
	}
	return recordJSON{ID: r.ID.String(), Stream: r.Stream, Version: r.Version, Position: r.Position,
		Type: r.Type, Data: data, Metadata: r.Metadata, RecordedAt: r.RecordedAt}
}

func (a *app) streamsReadCommand() *cobra.Command {
	var (
		from      int64
		limit     int
		backwards bool
	)
	cmd := &cobra.Command{
		Use:   "read <stream>",
		Short: "Print the events of a stream",
		Example: fmt.Sprintf(`  %[1]s streams read order-42
  %[1]s streams read order-42 --backwards --limit 1     # the last event
  %[1]s streams read order-42 --from 10 -o json`, a.cfg.Name),
		Args: exactArgs(1, "one stream name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from < 0 || limit < 0 {
				return usagef("--from and --limit must not be negative")
			}
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			opts := es.ReadStreamOptions{From: from, Limit: limit}
			if backwards {
				opts.Direction = es.Backwards
			}
			recs, err := c.store.ReadStream(ctx, args[0], opts)
			if errors.Is(err, es.ErrStreamNotFound) {
				return fmt.Errorf("stream %q not found: it has no events", args[0])
			}
			if err != nil {
				return a.explain(err)
			}
			return a.printRecords(recs)
		},
	}
	cmd.Flags().Int64Var(&from, "from", 0, "first version to print (default: the first, or the last with --backwards)")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many events (default: all)")
	cmd.Flags().BoolVar(&backwards, "backwards", false, "newest first")
	return cmd
}

func (a *app) printRecords(recs []es.Record) error {
	if a.format() == formatJSON {
		out := make([]recordJSON, 0, len(recs))
		for _, r := range recs {
			out = append(out, toJSON(r))
		}
		return a.writeJSON(out)
	}
	t := a.newTable("VERSION", "POSITION", "TYPE", "RECORDED", "DATA")
	for _, r := range recs {
		data := string(r.Data)
		if !t.lines {
			data = truncate(data, 60)
		}
		t.row(strconv.FormatInt(r.Version, 10), r.Position.String(), r.Type, formatTime(r.RecordedAt), data)
	}
	t.flush()
	return nil
}
