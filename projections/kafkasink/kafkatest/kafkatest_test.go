package kafkatest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

func TestMain(m *testing.M) {
	os.Exit(kafkatest.Run(m, func(m *testing.M) int {
		code := m.Run()
		if code == 0 {
			// The broker Run started is stopped after this, so its process
			// watcher is still waiting here.
			if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/stratadev/strata/internal/localproc.Start.func1")); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
				return 1
			}
		}
		return code
	}))
}

// values returns "prefix-from" … "prefix-(to-1)".
func values(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+"-"+strconv.Itoa(i))
	}
	return out
}

// produceTx produces vs to the client's default topic in one transaction,
// and commits it, or aborts it when commit is false.
func produceTx(t *testing.T, cl *kgo.Client, commit bool, vs ...string) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	var rs []*kgo.Record
	for _, v := range vs {
		rs = append(rs, &kgo.Record{Key: []byte(v), Value: []byte(v)})
	}
	if err := cl.ProduceSync(t.Context(), rs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", len(rs), err)
	}
	if err := cl.EndTransaction(t.Context(), kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// consumeUntil reads topic from its start with a new client of url until
// it has read a record whose value is last, and returns the values read.
func consumeUntil(t *testing.T, url, topic, last string, opts ...kgo.Opt) []string {
	t.Helper()
	cl := kafkatest.ClientOf(t, url, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var got []string
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d records of %s, none with value %q: %v", len(got), topic, last, err)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("fetch %s partition %d: %v", e.Topic, e.Partition, e.Err)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, string(r.Value))
			done = done || string(r.Value) == last
		})
		if done {
			return got
		}
	}
}

func readCommitted() kgo.Opt { return kgo.FetchIsolationLevel(kgo.ReadCommitted()) }

func TestTransactionCommitted(t *testing.T) {
	t.Parallel()
	topic := kafkatest.Topic(t, 1)
	producer := kafkatest.Client(t, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(kafkatest.Name(t)))
	want := values("committed", 0, 100)
	produceTx(t, producer, true, want...)

	got := consumeUntil(t, kafkatest.URL(t), topic, want[len(want)-1], readCommitted())
	if !slices.Equal(got, want) {
		t.Errorf("read_committed read %d records %v, want the 100 committed %v", len(got), got, want)
	}
}

// An aborted transaction's records are in the log, but a read_committed
// consumer skips them.
func TestTransactionAborted(t *testing.T) {
	t.Parallel()
	topic := kafkatest.Topic(t, 1)
	producer := kafkatest.Client(t, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(kafkatest.Name(t)))
	produceTx(t, producer, true, values("before", 0, 10)...)
	produceTx(t, producer, false, values("aborted", 0, 10)...)
	produceTx(t, producer, true, values("after", 0, 10)...) // read up to here

	want := append(values("before", 0, 10), values("after", 0, 10)...)
	got := consumeUntil(t, kafkatest.URL(t), topic, "after-9", readCommitted())
	if !slices.Equal(got, want) {
		t.Errorf("read_committed read %v, want %v", got, want)
	}
	uncommitted := consumeUntil(t, kafkatest.URL(t), topic, "after-9")
	if want := append(values("before", 0, 10), append(values("aborted", 0, 10), values("after", 0, 10)...)...); !slices.Equal(uncommitted, want) {
		t.Errorf("read_uncommitted read %v, want %v", uncommitted, want)
	}
}

// A second producer with the same transactional ID fences the first: the
// first's open transaction cannot commit, and its records are not read.
func TestTransactionFenced(t *testing.T) {
	t.Parallel()
	topic := kafkatest.Topic(t, 1)
	id := kafkatest.Name(t)
	first := kafkatest.Client(t, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(id))
	if err := first.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := first.ProduceSync(t.Context(), &kgo.Record{Value: []byte("fenced")}).FirstErr(); err != nil {
		t.Fatalf("first producer: produce: %v", err)
	}

	second := kafkatest.Client(t, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(id))
	produceTx(t, second, true, "second")

	err := first.EndTransaction(t.Context(), kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("first producer's commit after the second started: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	got := consumeUntil(t, kafkatest.URL(t), topic, "second", readCommitted())
	if want := []string{"second"}; !slices.Equal(got, want) {
		t.Errorf("read_committed read %v, want %v", got, want)
	}
}

// Committed records survive a broker killed with SIGKILL and restarted on
// the same port, and the restarted broker takes new transactions.
func TestKillRestart(t *testing.T) {
	t.Parallel()
	kafkatest.URL(t) // skips with the others under STRATA_SKIP_KAFKA=1
	port, err := kafkatest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kafkatest.Start(t.Context(), kafkatest.ServerConfig{Port: port})
	if errors.Is(err, kafkatest.ErrNotInstalled) && !pgtest.Required() {
		t.Skip(err) // TEST_KAFKA_URL names a broker, but this test needs one to kill
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	url := srv.URL()
	topic := kafkatest.TopicOn(t, kadm.NewClient(kafkatest.ClientOf(t, url)), 2)
	id := kafkatest.Name(t)
	before := kafkatest.ClientOf(t, url, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(id))
	produceTx(t, before, true, values("before", 0, 50)...)
	before.Close()

	srv.Kill()
	if conn, err := net.Dial("tcp", url); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Kill", url)
	}
	if err := srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL after Restart = %s, want %s", srv.URL(), url)
	}
	got := consumeUntil(t, url, topic, "before-49", readCommitted())
	if want := values("before", 0, 50); !sameSet(got, want) {
		t.Errorf("after Restart read_committed read %v, want %v", got, want)
	}

	after := kafkatest.ClientOf(t, url, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(id))
	produceTx(t, after, true, values("after", 0, 10)...)
	got = consumeUntil(t, url, topic, "after-9", readCommitted())
	if want := append(values("before", 0, 50), values("after", 0, 10)...); !sameSet(got, want) {
		t.Errorf("after a new transaction read_committed read %v, want %v", got, want)
	}
}

// sameSet reports whether a and b hold the same values, in any order (a
// topic of several partitions has no order across them).
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
