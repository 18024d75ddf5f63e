package cli

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/projections/kafkasink/consume"
)

func (a *app) consumersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "consumers [group...]",
		Short: "Show the Kafka consumers' state, failures, counts and lag",
		Long: `Show the consumer groups of projections/kafkasink/consume that keep their
state in --schema (default: every group that ever ran there): running,
retrying a transient error, stalled at a message (which it names, with the
reason) or stopped; the messages whose command the domain rejected and those
moved to the dead-letter topic; and the lag, summed over the group's
partitions, as of the group's last commit. A consumer killed without a
chance to record it still shows its last state: see UPDATED.`,
		Example: fmt.Sprintf("  %[1]s consumers\n  %[1]s consumers shipping.order-copy -o json", a.cfg.Name),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			schema := a.settings().Schema
			groups := args
			if len(groups) == 0 {
				if groups, err = consume.Groups(ctx, c.pool, schema); err != nil {
					return err
				}
			}
			all := []consume.ConsumerStatus{}
			for _, g := range groups {
				st, err := consume.Status(ctx, c.pool, schema, g)
				if errors.Is(err, consume.ErrUnknownGroup) {
					return usagef("no consumer group %q has run in schema %s", g, schema)
				}
				if err != nil {
					return err
				}
				all = append(all, st)
			}
			if a.format() == formatJSON {
				return a.writeJSON(all)
			}
			if len(all) == 0 && a.format() == formatTable {
				fmt.Fprintf(a.stdout(), "no Kafka consumer has run in schema %s\n", schema)
				return nil
			}
			t := a.newTable("GROUP", "KIND", "STATE", "LAG", "REJECTED", "DEAD-LETTERED", "UPDATED", "FAILURE")
			for _, st := range all {
				var lag int64
				for _, p := range st.Partitions {
					lag += p.Lag
				}
				failure := st.Failure
				if st.At != nil {
					failure = st.At.String() + ": " + failure
				}
				t.row(st.Group, st.Kind, string(st.State), strconv.FormatInt(lag, 10), strconv.FormatInt(st.Rejected, 10),
					strconv.FormatInt(st.DeadLettered, 10), formatTime(st.UpdatedAt), orDash(truncate(failure, 120)))
			}
			t.flush()
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
