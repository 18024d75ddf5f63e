package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// orderEvents is a Kafka projection: an order.placed.v1 message per
// OrderPlaced event.
type orderEvents struct{ name, topic string }

func (p orderEvents) Name() string    { return p.name }
func (orderEvents) Handles() []string { return []string{"OrderPlaced"} }

func (p orderEvents) HandleBatch(ctx context.Context, tx *kafkasink.Tx, events []projections.Event) error {
	for _, ev := range events {
		o := ev.Data.(orderPlaced)
		b, err := json.Marshal(map[string]any{"order_id": o.ID, "total_cents": o.Total})
		if err != nil {
			return err
		}
		if err := tx.Publish(p.topic, ev, "order.placed.v1", b); err != nil {
			return err
		}
	}
	return nil
}

// checkpointTopic is the checkpoint topic of the tests' Kafka projections,
// each of which has a name of its own.
const checkpointTopic = "strata.checkpoints.cli-test"

// kafkaOpts returns the options of a test with a Kafka projection of its
// own that publishes to a topic of its own.
func kafkaOpts(t *testing.T) (opts, orderEvents) {
	t.Helper()
	url := kafkatest.URL(t) // skip or fail first
	p := orderEvents{name: strings.ReplaceAll(kafkatest.Name(t), "-", "_"), topic: kafkatest.Topic(t, 1)}
	return opts{
		kafka:    []cli.KafkaProjection{{Projection: p}},
		kafkaCfg: kafkasink.Config{Topics: []kafkasink.Topic{{Name: p.topic}}, CheckpointTopic: checkpointTopic, Logger: quiet},
		env:      map[string]string{cli.EnvKafkaBrokers: url},
	}, p
}

// runKafkaUntil runs 'projections run' with o until the projection's checkpoint
// is at pos, then stops it by cancelling its context.
func (e *env) runKafkaUntil(t *testing.T, o opts, name string, pos es.Position, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, append([]string{"projections", "run"}, args...)...) }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, name, pos)
	wcancel()
	cancel()
	r := <-done
	if err != nil {
		t.Fatalf("wait for %s at %s: %v\nstdout:\n%s\nstderr:\n%s", name, pos, err, r.stdout, r.stderr)
	}
	return r
}

// readCommitted reads topic to its end as a read_committed consumer and
// returns how many messages it holds of each ce_id.
func readCommitted(t *testing.T, topic string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ends, err := kafkatest.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	last := map[int32]int64{} // the last offset of each partition, a control record or not
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			last[o.Partition] = o.Offset - 1
		}
	})
	cl := kafkatest.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	seen := map[string]int{}
	for len(last) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: partitions %v not read to their end: %v", topic, last, ctx.Err())
		}
		if err := fs.Err(); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("read %s: %v", topic, err)
		}
		for _, r := range fs.Records() {
			if l, ok := last[r.Partition]; ok && r.Offset >= l {
				delete(last, r.Partition)
			}
			if r.Attrs.IsControl() {
				continue
			}
			env, err := kafkasink.ParseHeaders(r.Headers)
			if err != nil {
				t.Fatalf("message %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			seen[env.ID.String()]++
		}
	}
	return seen
}

// checkSeen checks that the topic holds n messages of each event of the
// log, and no others.
func (e *env) checkSeen(t *testing.T, topic string, n int) {
	t.Helper()
	seen := readCommitted(t, topic)
	recs, err := e.store.ReadAll(t.Context(), es.Start, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID.String())
	}
	for _, id := range ids {
		if seen[id] != n {
			t.Errorf("event %s: %d messages with its ce_id, want %d", id, seen[id], n)
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("the topic holds messages of %d events, want %d (the log's)", len(seen), len(ids))
	}
}

func (e *env) checkpoint(t *testing.T, name string) es.Position {
	t.Helper()
	cp, err := e.sink.Checkpoint(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Position
}

// A Kafka projection runs, shows in list and status, refuses a rebuild,
// a reset backwards and a verify without publishing again, and with
// --republish publishes every event a second time.
func TestKafkaProjection(t *testing.T) {
	t.Parallel()
	o, p := kafkaOpts(t)
	e := newEnv(t)
	res := e.place(t, 1, 2, 3)

	r := e.runKafkaUntil(t, o, p.name, res.Position)
	r.check(t, 0, "running "+p.name+" (Ctrl-C to stop)", p.name+": stopped at "+res.Position.String()+" after applying 3 events")
	e.checkSeen(t, p.topic, 1)

	e.waitVisible(t, res.Position)
	r = e.mustRun(t, o, "projections", "status", p.name, "-o", "json", "--sample", "0")
	var st struct {
		Name       string
		State      string
		Checkpoint es.Position
		LagEvents  int64 `json:"lag_events"`
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &st); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if want := (struct {
		Name       string
		State      string
		Checkpoint es.Position
		LagEvents  int64 `json:"lag_events"`
	}{p.name, "running", res.Position, 0}); st != want {
		t.Errorf("status:\n got %+v\nwant %+v", st, want)
	}

	r = e.mustRun(t, o, "projections", "list", "-o", "json")
	var items []struct {
		Name       string
		Registered bool
		Kind       string
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &items); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(items) != 1 || items[0].Name != p.name || !items[0].Registered || items[0].Kind != "kafka" {
		t.Errorf("projections list: %+v, want %s registered, of kind kafka", items, p.name)
	}
	tty := o
	tty.tty = true
	e.mustRun(t, tty, "projections", "list").check(t, 0, "KIND", " kafka\n")
	if r := e.mustRun(t, o, "__complete", "projections", "run", ""); !strings.Contains(r.stdout.String(), p.name+"\n") {
		t.Errorf("completion of projections run does not offer %s:\n%s", p.name, r.stdout)
	}

	// Without --republish: refused, with what it would do; nothing moves.
	e.cli(t.Context(), o, "projections", "rebuild", p.name).check(t, cli.ExitUsage,
		"not rebuilding "+p.name+": a Kafka projection has no tables to rebuild",
		"publishing every event of the log again from the start",
		"a second time with the same ce_id",
		"projections rebuild "+p.name+" --republish")
	e.cli(t.Context(), o, "projections", "reset", p.name).check(t, cli.ExitFailed,
		"not resetting "+p.name+" from "+res.Position.String()+" back to the start",
		"a reset in PostgreSQL alone would be undone",
		"projections reset "+p.name+" --republish")
	e.cli(t.Context(), o, "projections", "reset", p.name, "--to", "0:0", "--idempotent").check(t, cli.ExitFailed,
		"not resetting "+p.name)
	e.cli(t.Context(), o, "projections", "verify", p.name).check(t, cli.ExitUsage,
		"cannot be verified: it is a Kafka projection")
	if got := e.checkpoint(t, p.name); got != res.Position {
		t.Fatalf("checkpoint after the refusals: %s, want %s", got, res.Position)
	}
	// --republish is for Kafka projections only.
	e.cli(t.Context(), opts{projections: []cli.Projection{{Projection: &orderView{}}}}, "projections", "rebuild", "order_view", "--republish").
		check(t, cli.ExitUsage, `--republish is for Kafka projections, and "order_view" is not one`)

	// --republish: the checkpoint moves to the start, and the next run
	// publishes every event again: twice in all, with the same ce_id.
	e.mustRun(t, o, "projections", "rebuild", p.name, "--republish").check(t, 0,
		"republish "+p.name+": checkpoint "+res.Position.String()+" -> the start",
		"projections run "+p.name)
	if got := e.checkpoint(t, p.name); got != es.Start {
		t.Fatalf("checkpoint after rebuild --republish: %s, want the start", got)
	}
	e.runKafkaUntil(t, o, p.name, res.Position).check(t, 0, p.name+": stopped at "+res.Position.String()+" after applying 3 events")
	e.checkSeen(t, p.topic, 2)
}

// A reset backwards with --republish goes through Kafka; while a worker
// runs, republishing is refused, since it needs the lease.
func TestKafkaResetRepublish(t *testing.T) {
	t.Parallel()
	o, p := kafkaOpts(t)
	e := newEnv(t)
	first := e.place(t, 1)
	res := e.place(t, 2, 3)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, "projections", "run", p.name) }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, p.name, res.Position)
	wcancel()
	busy := e.cli(t.Context(), o, "projections", "rebuild", p.name, "--republish")
	cancel()
	r := <-done
	if err != nil {
		t.Fatalf("wait for %s: %v\nstdout:\n%s\nstderr:\n%s", p.name, err, r.stdout, r.stderr)
	}
	busy.check(t, cli.ExitFailed, "not republishing "+p.name+": a worker of it is running")

	e.mustRun(t, o, "projections", "reset", p.name, "--to", first.Position.String(), "--republish").check(t, 0,
		"reset "+p.name+": checkpoint "+res.Position.String()+" -> "+first.Position.String(),
		"its workers publish the events after it again")
	if got := e.checkpoint(t, p.name); got != first.Position {
		t.Fatalf("checkpoint after reset --republish: %s, want %s", got, first.Position)
	}
	e.runKafkaUntil(t, o, p.name, res.Position).check(t, 0, "after applying 2 events")
	seen := readCommitted(t, p.topic)
	if len(seen) != 3 {
		t.Errorf("messages of %d events, want 3", len(seen))
	}
	var twice int
	for _, n := range seen {
		if n == 2 {
			twice++
		}
	}
	if twice != 2 {
		t.Errorf("%d events published twice, want 2 (those after %s): %v", twice, first.Position, seen)
	}
}

// Kafka projections need brokers: the error names the flag and the
// environment variable, before anything is opened.
func TestKafkaNoBrokers(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	o := opts{kafka: []cli.KafkaProjection{{Projection: orderEvents{name: "order_events", topic: "orders"}}}}
	for _, args := range [][]string{
		{"projections", "run"},
		{"projections", "run", "order_events"},
		{"projections", "rebuild", "order_events", "--republish"},
	} {
		e.cli(t.Context(), o, args...).check(t, cli.ExitUsage,
			"no Kafka brokers: set --kafka-brokers or STRATA_KAFKA_BROKERS")
	}
}

// A worker fenced by a producer that does not hold the projection's lease
// here (another schema publishes it with the same transactional ID) says
// so and is not started again, which would fence the other back.
func TestKafkaFencedRun(t *testing.T) {
	t.Parallel()
	o, p := kafkaOpts(t)
	e := newEnv(t)
	res := e.place(t, 1)

	ctx, cancel := context.WithCancel(t.Context())
	stderr := newBuffer()
	o.stderr = stderr
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, "projections", "run") }()
	defer func() {
		cancel()
		<-done
	}()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	if err := projections.WaitFor(wctx, e.sink, p.name, res.Position); err != nil {
		t.Fatalf("wait for %s: %v\nstderr:\n%s", p.name, err, stderr)
	}

	// Another deployment: its own schema, the same cluster and name.
	other := newEnv(t)
	cfg := o.kafkaCfg
	cfg.Brokers = []string{o.env[cli.EnvKafkaBrokers]}
	zombie := kafkasink.New(other.sink, cfg)
	defer zombie.Close()
	apply := func() error {
		return zombie.Apply(t.Context(), projections.ApplyParams{Projection: p.name, From: res.Position, To: res.Position}, nil)
	}
	if err := apply(); err != nil {
		t.Fatalf("the other deployment's first batch: %v", err)
	}
	e.place(t, 2) // the run's next batch finds its producer fenced
	stderr.waitFor(t, p.name+": fenced by another producer with transactional ID strata-"+p.name)
	if err := apply(); err != nil {
		t.Fatalf("the other deployment's batch after the run was fenced: %v (fenced back?)", err)
	}
	if s := stderr.String(); strings.Contains(s, "starting it again") {
		t.Errorf("the fenced worker was started again:\n%s", s)
	}
	cancel()
	r := <-done
	done <- r
	r.check(t, cli.ExitFailed, p.name+": fenced at ", "another worker publishes projection "+p.name)
}

// New checks the Kafka configuration, but for the brokers, which may come
// from --kafka-brokers, and the Kafka projections' names.
func TestNewKafkaConfig(t *testing.T) {
	t.Parallel()
	kp := []cli.KafkaProjection{{Projection: orderEvents{name: "order_view", topic: "orders"}}}
	for _, tc := range []struct {
		name string
		cfg  cli.Config
		want string // in the panic; "" for none
	}{
		{"no brokers", cli.Config{KafkaProjections: kp}, ""},
		{"a topic without a name", cli.Config{Kafka: kafkasink.Config{Topics: []kafkasink.Topic{{}}}}, "Config.Kafka: kafkasink: Config.Topics[0] has no name"},
		{"no projection", cli.Config{KafkaProjections: []cli.KafkaProjection{{}}}, "Config.KafkaProjections[0] has no projection or no name"},
		{"a name taken", cli.Config{KafkaProjections: kp, Projections: []cli.Projection{{Projection: &orderView{}}}}, `projection "order_view" is registered twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			func() {
				defer func() {
					if r := recover(); r != nil {
						got = fmt.Sprint(r)
					}
				}()
				cli.New(tc.cfg)
			}()
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("New panicked with %q, want %q", got, tc.want)
			}
		})
	}
}
