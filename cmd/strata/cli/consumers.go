package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/projections/kafkasink/consume"
)

// stateGone is the STATE that consumers shows for a group whose recorded
// state says it consumes (running or retrying) but which has no member in
// Kafka: its processes died without recording it. Not "stopped", which
// says a consumer recorded a clean stop, nor "dead", which is a Kafka
// group state of its own.
const stateGone = "gone"

// consumerOutput is a group in consumers -o json: the recorded status, and
// what Kafka says of its members when the brokers answered.
type consumerOutput struct {
	consume.ConsumerStatus
	// Members is the number of members of the group in Kafka; absent
	// without brokers, or when they did not answer.
	Members *int `json:",omitempty"`
	// Live is Members > 0; absent with Members.
	Live *bool `json:",omitempty"`
}

func (a *app) consumersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "consumers [group...]",
		Short: "Show the Kafka consumers' state, members, failures, counts and lag",
		Long: `Show the consumer groups of projections/kafkasink/consume that keep their
state in --schema (default: every group that ever ran there): running,
retrying a transient error, stalled at a message (which it names, with the
reason) or stopped; the messages whose command the domain rejected and those
moved to the dead-letter topic; and the lag, summed over the group's
partitions, as of the group's last commit.

That state is what the consumers last recorded: a consumer killed with
SIGKILL, or whose machine died, never records that it stopped. With Kafka
brokers (--kafka-brokers or ` + EnvKafkaBrokers + `), the command also asks
Kafka how many members each group has (MEMBERS) and shows a group recorded
as running or retrying that has no member as "gone". Kafka drops a killed
member once its session timeout has passed without a heartbeat (45s unless
the consumers set kgo.SessionTimeout), so a consumer killed less than that
ago still shows as running with its member. A consumer joins its group only
once one of its topics exists, so a live consumer of missing topics shows
as gone too: FAILURE asks about the topics when the group never consumed a
partition. A group's processes share one state: "stopped" with MEMBERS
above 0 means another process of the group still consumes. Without
brokers, MEMBERS is not shown and a consumer killed without a chance to
record it shows its last state: see UPDATED.

When the brokers cannot be reached, the command still shows the recorded
states, with MEMBERS "?", warns on standard error, and exits 0: Kafka being
down is no reason to hide what PostgreSQL knows. -o json keeps each group's
recorded State and adds Members and Live (Members > 0) when Kafka answered.`,
		Example: fmt.Sprintf("  %[1]s consumers\n  %[1]s consumers --kafka-brokers localhost:9092\n  %[1]s consumers shipping.order-copy -o json", a.cfg.Name),
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
			all := []consumerOutput{}
			for _, g := range groups {
				st, err := consume.Status(ctx, c.pool, schema, g)
				if errors.Is(err, consume.ErrUnknownGroup) {
					return usagef("no consumer group %q has run in schema %s", g, schema)
				}
				if err != nil {
					return err
				}
				all = append(all, consumerOutput{ConsumerStatus: st})
			}
			asked := len(c.kafkaCfg.Brokers) > 0
			if asked && len(all) > 0 {
				a.members(ctx, c, groups, all)
			}
			if a.format() == formatJSON {
				return a.writeJSON(all)
			}
			if len(all) == 0 && a.format() == formatTable {
				fmt.Fprintf(a.stdout(), "no Kafka consumer has run in schema %s\n", schema)
				return nil
			}
			header := []string{"GROUP", "KIND", "STATE", "LAG", "REJECTED", "DEAD-LETTERED", "UPDATED", "FAILURE"}
			if asked {
				header = []string{"GROUP", "KIND", "STATE", "MEMBERS", "LAG", "REJECTED", "DEAD-LETTERED", "UPDATED", "FAILURE"}
			}
			t := a.newTable(header...)
			for _, o := range all {
				st := o.ConsumerStatus
				var lag int64
				for _, p := range st.Partitions {
					lag += p.Lag
				}
				state, failure := string(st.State), st.Failure
				if st.At != nil {
					failure = st.At.String() + ": " + failure
				}
				if o.gone() {
					state = stateGone
					failure = goneFailure(st)
				}
				row := []string{st.Group, st.Kind, state}
				if asked {
					members := "?"
					if o.Members != nil {
						members = strconv.Itoa(*o.Members)
					}
					row = append(row, members)
				}
				row = append(row, strconv.FormatInt(lag, 10), strconv.FormatInt(st.Rejected, 10),
					strconv.FormatInt(st.DeadLettered, 10), formatTime(st.UpdatedAt), orDash(truncate(failure, 120)))
				t.row(row...)
			}
			t.flush()
			return nil
		},
	}
}

// members fills in the members of all's groups from Kafka, or warns on
// standard error that it could not, leaving them unknown.
func (a *app) members(ctx context.Context, c *conn, groups []string, all []consumerOutput) {
	mctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	n, err := consume.Members(mctx, c.kafkaCfg.Brokers, groups, c.kafkaCfg.ClientOptions...)
	if err != nil {
		if ctx.Err() == nil {
			fmt.Fprintf(a.cfg.Stderr, "%s: warning: cannot tell which consumers are alive, STATE is as last recorded: %s\n",
				a.cfg.Name, oneLine(err))
		}
		return
	}
	for i := range all {
		m := n[all[i].Group]
		live := m > 0
		all[i].Members, all[i].Live = &m, &live
	}
}

// gone says whether the group's recorded state says it consumes while
// Kafka knows no member of it.
func (o consumerOutput) gone() bool {
	return o.Live != nil && !*o.Live && (o.State == consume.StateRunning || o.State == consume.StateRetrying)
}

// goneFailure is the FAILURE of a gone group: what Kafka says, what the
// group recorded last, and, when the group never consumed a partition, the
// other reason a live consumer is no member: franz-go joins the group only
// once one of its topics exists.
func goneFailure(st consume.ConsumerStatus) string {
	s := fmt.Sprintf("no member in Kafka group; recorded %s at %s", st.State, formatTime(st.UpdatedAt))
	if len(st.Partitions) == 0 {
		s += "; never consumed a partition: do its topics exist?"
	}
	if st.Failure != "" {
		s += "; " + st.Failure
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
