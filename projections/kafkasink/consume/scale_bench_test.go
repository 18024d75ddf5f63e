package consume_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// Settings of BenchmarkScaleOut.
const (
	scalePartitions = 8
	scaleBatch      = 50                    // Config.BatchSize of the consumer processes
	scaleDelay      = 20 * time.Millisecond // what the handler waits per batch: a slow sink
	scaleRate       = 400                   // messages/s of the steady stream of the failover
)

// Environment of the consumer processes BenchmarkScaleOut starts. A test
// binary started without envScaleChild runs the benchmark itself.
const (
	envScaleChild  = "CONSUME_BENCH_CHILD" // "scaleout" in a consumer process
	envScaleSchema = "CONSUME_BENCH_SCHEMA"
	envScaleTable  = "CONSUME_BENCH_TABLE"
	envScaleTopic  = "CONSUME_BENCH_TOPIC"
	envScaleGroup  = "CONSUME_BENCH_GROUP"
	envScaleKafka  = "CONSUME_BENCH_KAFKA"
)

// scaleEvents is how many messages BenchmarkScaleOut consumes: 20,000
// unless STRATA_BENCH_EVENTS says otherwise.
func scaleEvents(b *testing.B) int {
	if os.Getenv("STRATA_BENCH_EVENTS") == "" {
		return 20_000
	}
	return benchEvents(b)
}

// BenchmarkScaleOut runs a read model as 1, 2 and 4 processes of one
// consumer group (this test binary started again as children), each with
// Config.BatchSize 50 and a handler that waits 20ms per batch, standing in
// for a slow sink, then inserts the batch's ce_ids into a table with one
// statement. Each run has a topic of 8 partitions, a group and a table of
// its own.
//
// Scale-out: the N messages (20,000; STRATA_BENCH_EVENTS) are produced in
// one Kafka transaction that commits once every process holds its
// partitions (the group is stable), so that the read_committed consumers
// find the topic full and the group's join is not timed. The clock runs
// from the commit to the commit of the batch that makes the table hold
// all N. It reports each count's messages/s, its speed-up over one
// process, and that divided by the process count (speedup/N: 1 is
// linear).
//
// Failover: 2 processes consume a steady stream of 400 messages/s (session
// timeout 6s, rebalance timeout 5s); once both have committed batches, one
// is killed with SIGKILL, and the clock runs from the kill until the
// survivor committed a batch of every partition. It reports that as
// failover-s.
func BenchmarkScaleOut(b *testing.B) {
	if os.Getenv(envScaleChild) == "scaleout" {
		scaleChild(b)
		return
	}
	x := &scaleBench{url: kafkatest.URL(b), n: scaleEvents(b)}
	x.pool, x.schema = pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 8})
	for b.Loop() {
		var one float64
		for _, procs := range []int{1, 2, 4} {
			took := x.scale(b, procs)
			rate := float64(x.n) / took.Seconds()
			if procs == 1 {
				one = rate
			}
			b.ReportMetric(rate, fmt.Sprintf("msgs/s-%dp", procs))
			if procs > 1 {
				b.ReportMetric(rate/one, fmt.Sprintf("speedup-%dp", procs))
				b.ReportMetric(rate/one/float64(procs), fmt.Sprintf("speedup/N-%dp", procs))
			}
		}
		b.ReportMetric(x.failover(b).Seconds(), "failover-s")
	}
	b.ReportMetric(0, "ns/op")
}

// scaleChild is a consumer process of BenchmarkScaleOut: it runs the read
// model until SIGTERM. Each batch notifies the channel of the run's table
// with "<partition> <next offset> <pid> <unix nanoseconds>" as it commits,
// the time taken just before the commit.
func scaleChild(b *testing.B) {
	schema, table := os.Getenv(envScaleSchema), os.Getenv(envScaleTable)
	pool := pgtest.NamedPool(b, "scale-child")
	insert := `INSERT INTO ` + pgx.Identifier{schema, table}.Sanitize() + ` (id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING`
	channel := counterModel{schema: table}.channel()
	pid := strconv.Itoa(os.Getpid())
	h := consume.HandlerFunc(func(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
		select { // the slow sink
		case <-time.After(scaleDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
		ids := make([]uuid.UUID, len(msgs))
		for i, m := range msgs {
			ids[i] = m.Envelope.ID
		}
		if _, err := tx.Exec(ctx, insert, ids); err != nil {
			return err
		}
		last := msgs[len(msgs)-1]
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, fmt.Sprintf("%d %d %s %d", last.Partition, last.Offset+1, pid, time.Now().UnixNano()))
		return err
	})
	rm, err := consume.NewReadModel(consume.Config{Brokers: []string{os.Getenv(envScaleKafka)}, Group: os.Getenv(envScaleGroup),
		Topics: []string{os.Getenv(envScaleTopic)}, Pool: pool, Schema: schema, BatchSize: scaleBatch, Logger: quiet,
		ClientOptions: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(5 * time.Second)}}, h)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := signalContext(b.Context(), syscall.SIGTERM)
	defer cancel()
	if err := rm.Run(ctx); err != nil {
		b.Fatal(err)
	}
}

type scaleBench struct {
	url, schema string
	pool        *pgxpool.Pool
	n           int
	runs        int
}

// run makes the topic, group and table of a run, and starts procs
// consumer processes on them.
func (x *scaleBench) run(b *testing.B, procs int) (topic, group, table string, children []*scaleProc) {
	x.runs++
	topic = kafkatest.Topic(b, scalePartitions)
	group = fmt.Sprintf("scale-%s-%d", topic, x.runs)
	table = fmt.Sprintf("scale_%d", x.runs)
	if _, err := x.pool.Exec(b.Context(), `CREATE TABLE `+pgx.Identifier{x.schema, table}.Sanitize()+` (id uuid PRIMARY KEY)`); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), envScaleChild+"=scaleout", envScaleSchema+"="+x.schema, envScaleTable+"="+table,
		envScaleTopic+"="+topic, envScaleGroup+"="+group, envScaleKafka+"="+x.url)
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScaleOut$", "-test.benchtime=1x", "-test.timeout=5m")
		cmd.Env = env
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		c := &scaleProc{cmd: cmd, exited: make(chan struct{})}
		go func() { cmd.Wait(); close(c.exited) }()
		b.Cleanup(func() { // a child still running is one that failed the benchmark
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-c.exited
		})
		children = append(children, c)
	}
	return topic, group, table, children
}

// scaleProc is a consumer process of BenchmarkScaleOut.
type scaleProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (c *scaleProc) pid() string { return strconv.Itoa(c.cmd.Process.Pid) }

// stopChildren asks the children to leave the group and waits until they
// exited.
func stopChildren(b *testing.B, children []*scaleProc) {
	for _, c := range children {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range children {
		select {
		case <-c.exited:
		case <-time.After(time.Minute):
			b.Fatalf("consumer process %s did not stop within a minute of SIGTERM", c.pid())
		}
	}
}

// waitStable waits until group has procs members that hold all the
// partitions of topic between them, each some.
func waitStable(b *testing.B, adm *kadm.Client, group string, procs int) {
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	var last string
	for {
		described, err := adm.DescribeGroups(ctx, group)
		last = fmt.Sprint(err)
		if err == nil {
			g := described[group]
			held, each := 0, true
			for _, m := range g.Members {
				a, ok := m.Assigned.AsConsumer()
				n := 0
				for _, t := range a.Topics {
					n += len(t.Partitions)
				}
				held += n
				each = each && ok && n > 0
			}
			last = fmt.Sprintf("state %s, %d members holding %d partitions", g.State, len(g.Members), held)
			if g.State == "Stable" && len(g.Members) == procs && held == scalePartitions && each {
				return
			}
		}
		select {
		case <-ctx.Done():
			b.Fatalf("group %s not stable with %d members within a minute: %s", group, procs, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scale consumes N messages with procs processes and returns the time from
// the commit of the messages to the commit of the last batch.
func (x *scaleBench) scale(b *testing.B, procs int) time.Duration {
	topic, group, table, children := x.run(b, procs)
	notes := listen(b, counterModel{schema: table})
	prod := producer(b, x.url, kgo.TransactionalID("scale-"+topic), kgo.TransactionTimeout(2*time.Minute),
		kgo.ProducerLinger(5*time.Millisecond))
	if err := prod.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, x.n)
	for _, in := range inputs(x.n, benchKeys, scalePartitions) {
		recs = append(recs, in.record(topic))
	}
	produce(b, prod, recs...)
	end := ends(b, topic) // the offsets after the last messages, before the commit marker
	waitStable(b, kafkatest.Admin(b), group, procs)
	if err := prod.EndTransaction(b.Context(), kgo.TryCommit); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	notes.waitFor(b, end, 5*time.Minute)
	took := time.Since(start)
	var n int
	if err := x.pool.QueryRow(b.Context(), `SELECT count(*) FROM `+pgx.Identifier{x.schema, table}.Sanitize()).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != x.n {
		b.Fatalf("%d processes: the read model holds %d messages; want %d", procs, n, x.n)
	}
	stopChildren(b, children)
	return took
}

// failover kills one of 2 processes consuming a steady stream and returns
// the time until the survivor committed a batch of every partition.
func (x *scaleBench) failover(b *testing.B) time.Duration {
	topic, group, table, children := x.run(b, 2)
	notes := listen(b, counterModel{schema: table})
	prod := producer(b, x.url, kgo.ProducerLinger(time.Millisecond))
	ctx, cancel := context.WithCancel(b.Context())
	produced := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second * scalePartitions / scaleRate)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				produced <- nil
				return
			case <-tick.C:
			}
			recs := make([]*kgo.Record, 0, scalePartitions)
			for _, in := range inputs(scalePartitions, scalePartitions, scalePartitions) {
				recs = append(recs, in.record(topic))
			}
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
				produced <- err
				return
			}
		}
	}()
	defer func() {
		cancel()
		if err := <-produced; err != nil {
			b.Errorf("produce to %s: %v", topic, err)
		}
	}()
	waitStable(b, kafkatest.Admin(b), group, 2)
	stable := time.Now()

	// The stream is consumed: every partition and both processes have
	// committed batches since the group is stable.
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	parts, busy := map[int32]bool{}, map[string]bool{}
	for len(parts) < scalePartitions || len(busy) < 2 {
		if p, pid, at := x.note(wctx, b, notes, "both processes to commit batches"); at.After(stable) {
			parts[p], busy[pid] = true, true
		}
	}
	victim := children[0]
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	dead := victim.pid()
	moved := map[int32]bool{}
	for len(moved) < scalePartitions {
		// A batch counts when the survivor made it after the kill; the
		// notifications of earlier ones may still be on their way.
		if p, pid, at := x.note(wctx, b, notes, "the survivor to commit batches of every partition"); pid != dead && at.After(killed) {
			moved[p] = true
		}
	}
	took := time.Since(killed)
	cancel()
	stopChildren(b, children)
	return took
}

// note waits for the next batch notification and returns its partition,
// process and time.
func (x *scaleBench) note(ctx context.Context, b *testing.B, notes *batches, what string) (int32, string, time.Time) {
	n, err := notes.conn.WaitForNotification(ctx)
	if err != nil {
		b.Fatalf("waiting for %s: %v", what, err)
	}
	var p int32
	var next int64
	var pid string
	var at int64
	if _, err := fmt.Sscanf(n.Payload, "%d %d %s %d", &p, &next, &pid, &at); err != nil {
		b.Fatalf("notification %q: %v", n.Payload, err)
	}
	return p, pid, time.Unix(0, at)
}
