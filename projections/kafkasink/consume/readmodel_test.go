package consume_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// readModelEnv is a topic, a schema with the counter model, and a group.
type readModelEnv struct {
	url, topic, group, schema string
	pool                      *pgxpool.Pool
	model                     counterModel
}

func newReadModelEnv(t *testing.T, partitions int) readModelEnv {
	t.Helper()
	url := kafkatest.URL(t)
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
	e := readModelEnv{url: url, topic: kafkatest.Topic(t, partitions), group: kafkatest.Name(t), schema: schema, pool: pool,
		model: counterModel{schema: schema}}
	e.model.create(t, pool)
	return e
}

func (e readModelEnv) config(opts ...kgo.Opt) consume.Config {
	return consume.Config{Brokers: []string{e.url}, Group: e.group, Topics: []string{e.topic}, Pool: e.pool, Schema: e.schema,
		Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, ClientOptions: opts}
}

func (e readModelEnv) readModel(t testing.TB, cfg consume.Config, h consume.Handler) *consume.ReadModel {
	t.Helper()
	rm, err := consume.NewReadModel(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

// Messages reach the read model once each, and the offsets stored with
// them are the partitions' ends.
func TestReadModelEndToEnd(t *testing.T) {
	t.Parallel()
	e := newReadModelEnv(t, 3)
	ins := inputs(300, 10, 3)
	prod := producer(t, e.url)
	for _, in := range ins[:150] {
		produce(t, prod, in.record(e.topic))
	}
	b := listen(t, e.model)
	stop := running(t, e.readModel(t, e.config(), e.model).Run)
	for _, in := range ins[150:] {
		produce(t, prod, in.record(e.topic))
	}
	end := ends(t, e.topic)
	b.waitFor(t, end, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.model.read(t, e.pool), ins)
	if got := storedOffsets(t, e.pool, e.schema, e.group); !equalOffsets(got, end) {
		t.Errorf("stored offsets %v; want the ends %v", got, end)
	}
	st, err := consume.Status(t.Context(), e.pool, e.schema, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != consume.StateStopped || st.Kind != consume.KindReadModel || st.Failure != "" {
		t.Errorf("status state %q kind %q failure %q; want %q %q and none", st.State, st.Kind, st.Failure, consume.StateStopped, consume.KindReadModel)
	}
	for _, p := range st.Partitions {
		if p.Lag != 0 {
			t.Errorf("partition %d lag %d; want 0", p.Partition, p.Lag)
		}
	}

	// Started again, it goes on from the stored offsets: nothing twice.
	more := inputs(30, 10, 3)
	for _, in := range more {
		produce(t, prod, in.record(e.topic))
	}
	stop = running(t, e.readModel(t, e.config(), e.model).Run)
	b.waitFor(t, ends(t, e.topic), 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.model.read(t, e.pool), append(ins, more...))
}

// holdingModel holds its second batch until released.
type holdingModel struct {
	counterModel
	calls   atomic.Int32
	held    chan struct{} // closed when the second batch is held
	release chan struct{}
}

// It holds the batch before it writes, so that its transaction holds no
// row lock that would make the other consumer wait for it.
func (h *holdingModel) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	if h.calls.Add(1) == 2 {
		close(h.held)
		<-h.release
	}
	return h.counterModel.HandleBatch(ctx, tx, msgs)
}

// A consumer whose partition went to another member while it was inside
// HandleBatch cannot commit that batch afterwards: its offset guard finds
// the offset moved, and the transaction rolls back.
func TestReadModelZombieCannotCommit(t *testing.T) {
	t.Parallel()
	e := newReadModelEnv(t, 1)
	ins := inputs(30, 4, 1)
	prod := producer(t, e.url)
	for _, in := range ins[:10] {
		produce(t, prod, in.record(e.topic))
	}
	b := listen(t, e.model)

	// A takes the partition and is held in its first batch. The group
	// balances eagerly, so that B joining makes A give its partition up
	// first, which A cannot while it is held: its rebalance timeout is
	// short, so that the group soon gives up on it and gives B the
	// partition.
	zombie := &holdingModel{counterModel: e.model, held: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	releaseA := func() { releaseOnce.Do(func() { close(zombie.release) }) }
	rolledBack := newLogSignal("batch rolled back")
	eager := kgo.Balancers(kgo.RangeBalancer())
	cfgA := e.config(eager, kgo.RebalanceTimeout(2*time.Second))
	cfgA.Logger = slog.New(rolledBack)
	stopA := running(t, e.readModel(t, cfgA, zombie).Run)
	t.Cleanup(releaseA)                            // before stopA, should the test fail
	b.waitFor(t, ends(t, e.topic), 60*time.Second) // A's first batch committed
	for _, in := range ins[10:20] {
		produce(t, prod, in.record(e.topic))
	}
	wait(t, zombie.held, 60*time.Second, "A holding its second batch")

	// B joins, gets the partition once A is out, and applies the batch.
	stopB := running(t, e.readModel(t, e.config(eager, kgo.RebalanceTimeout(2*time.Second)), e.model).Run)
	for _, in := range ins[20:] {
		produce(t, prod, in.record(e.topic))
	}
	end := ends(t, e.topic)
	b.waitFor(t, end, 60*time.Second)

	// Released, A's commit must roll back.
	releaseA()
	wait(t, rolledBack.ch, 30*time.Second, "A's batch rolled back")
	if err := stopA(); err != nil {
		t.Fatalf("A: %v", err)
	}
	if err := stopB(); err != nil {
		t.Fatalf("B: %v", err)
	}
	checkExactlyOnce(t, e.model.read(t, e.pool), ins)
	if got := storedOffsets(t, e.pool, e.schema, e.group); !equalOffsets(got, end) {
		t.Errorf("stored offsets %v; want the ends %v", got, end)
	}
}

// Environment of the consumer processes TestReadModelKilled starts.
const (
	envChild       = "CONSUME_TEST_CHILD" // "readmodel" or "commands"
	envChildSchema = "CONSUME_TEST_SCHEMA"
	envChildTopic  = "CONSUME_TEST_TOPIC"
	envChildGroup  = "CONSUME_TEST_GROUP"
	envChildKafka  = "CONSUME_TEST_KAFKA"
	envChildMember = "CONSUME_TEST_MEMBER" // a static member ID, or empty for a dynamic member
)

// child is a consumer process of the kill tests.
type child struct {
	cmd     *exec.Cmd
	batches chan struct{} // one per batch the child is handling
	exited  chan struct{}
}

// startChild runs this test binary as a consumer process of test.
func startChild(t *testing.T, test string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, batches: make(chan struct{}, 1<<16), exited: make(chan struct{})}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "batch ") {
				c.batches <- struct{}{}
			}
		}
		cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// stop asks the child to leave the group and waits until it exited.
func (c *child) stop(t *testing.T) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("a consumer process did not stop within 60s of SIGTERM")
	}
}

// waitBatches waits for n batches of the child, or for it to exit.
func (c *child) waitBatches(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.batches:
		case <-c.exited:
			t.Fatal("a consumer process exited by itself")
		case <-time.After(60 * time.Second):
			t.Fatal("a consumer process handled no batch within 60s")
		}
	}
}

// printingModel prints "batch" on standard output inside each batch, before
// it commits, so that the parent can kill it there.
type printingModel struct{ counterModel }

func (p printingModel) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	if err := p.counterModel.HandleBatch(ctx, tx, msgs); err != nil {
		return err
	}
	fmt.Printf("batch %d %d..%d\n", msgs[0].Partition, msgs[0].Offset, msgs[len(msgs)-1].Offset)
	return nil
}

// childConfig is the configuration of a consumer process: small batches,
// and a static member ID for the main consumer, so that its restart takes
// the killed one's place without waiting for its session to expire.
func childConfig(pool *pgxpool.Pool) consume.Config {
	opts := []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(5 * time.Second)}
	if m := os.Getenv(envChildMember); m != "" {
		opts = append(opts, kgo.InstanceID(m))
	}
	return consume.Config{Brokers: []string{os.Getenv(envChildKafka)}, Group: os.Getenv(envChildGroup),
		Topics: []string{os.Getenv(envChildTopic)}, Pool: pool, Schema: os.Getenv(envChildSchema), BatchSize: 20,
		Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, ClientOptions: opts}
}

// childContext ends on SIGTERM.
func childContext(t *testing.T) context.Context {
	ctx, cancel := signalContext(t.Context(), syscall.SIGTERM)
	t.Cleanup(cancel)
	return ctx
}

// Consumer processes killed with SIGKILL at random moments inside their
// batches, while messages keep coming and a second member of the group
// joins and leaves, apply every message exactly once, and the stored
// offsets end at the partitions' ends.
func TestReadModelKilled(t *testing.T) {
	if os.Getenv(envChild) == "readmodel" {
		pool := pgtest.NamedPool(t, "consume-child")
		rm, err := consume.NewReadModel(childConfig(pool), printingModel{counterModel{schema: os.Getenv(envChildSchema)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rm.Run(childContext(t)); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	e := newReadModelEnv(t, 3)
	env := []string{envChild + "=readmodel", envChildSchema + "=" + e.schema, envChildTopic + "=" + e.topic,
		envChildGroup + "=" + e.group, envChildKafka + "=" + e.url}
	ins := inputs(3000, 30, 3)
	prod := producer(t, e.url)
	churn(t, "TestReadModelKilled", env, e.topic, prod, ins, 12, 4)

	b := listen(t, e.model)
	b.reached = storedOffsets(t, e.pool, e.schema, e.group) // before LISTEN, the children committed these
	stop := running(t, e.readModel(t, e.config(kgo.SessionTimeout(6*time.Second), kgo.InstanceID("main")), e.model).Run)
	end := ends(t, e.topic)
	b.waitFor(t, end, 2*time.Minute)
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.model.read(t, e.pool), ins)
	if got := storedOffsets(t, e.pool, e.schema, e.group); !equalOffsets(got, end) {
		t.Errorf("stored offsets %v; want the ends %v", got, end)
	}
}

// flakyModel fails its first two batches with a transient error and holds
// the third until released.
type flakyModel struct {
	counterModel
	calls          atomic.Int32
	third, release chan struct{}
}

func (f *flakyModel) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	switch n := f.calls.Add(1); {
	case n <= 2:
		return errors.New("flaky database")
	case n == 3:
		close(f.third)
		<-f.release
	}
	return f.counterModel.HandleBatch(ctx, tx, msgs)
}

// A transient error of a batch is retried with backoff, shown as retrying
// in the status meanwhile, and the batch applies once in the end.
func TestReadModelRetryTransient(t *testing.T) {
	t.Parallel()
	e := newReadModelEnv(t, 1)
	ins := inputs(20, 3, 1)
	prod := producer(t, e.url)
	for _, in := range ins {
		produce(t, prod, in.record(e.topic))
	}
	b := listen(t, e.model)
	flaky := &flakyModel{counterModel: e.model, third: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(flaky.release) }) }
	cfg := e.config()
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, time.Millisecond
	stop := running(t, e.readModel(t, cfg, flaky).Run)
	t.Cleanup(release)
	wait(t, flaky.third, 60*time.Second, "the second retry")
	st, err := consume.Status(t.Context(), e.pool, e.schema, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != consume.StateRetrying || !strings.Contains(st.Failure, "flaky database") || st.Attempts != 2 {
		t.Errorf("status %q failure %q attempts %d; want %q, the error, 2", st.State, st.Failure, st.Attempts, consume.StateRetrying)
	}
	if len(st.Partitions) != 0 {
		t.Errorf("offsets %v stored before any batch committed; want none", st.Partitions)
	}
	release()
	b.waitFor(t, ends(t, e.topic), 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.model.read(t, e.pool), ins)
}
