package consume_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Run(m, pgtest.Run)) }

var quiet = slog.New(slog.DiscardHandler)

// The input of the tests: "order.placed.v1" messages that add amount to
// key's counter.
const typeAdded = "order.placed.v1"

type added struct {
	Key    string `json:"key"`
	Amount int    `json:"amount"`
}

// input is a message to produce.
type input struct {
	id        uuid.UUID
	key       string
	amount    int
	partition int32
}

func (in input) record(topic string) *kgo.Record {
	v, _ := json.Marshal(added{Key: in.key, Amount: in.amount})
	env := kafkasink.Envelope{ID: in.id, Type: typeAdded, Source: "test", Subject: "order-" + in.key, Version: 1}
	return &kgo.Record{Topic: topic, Partition: in.partition, Key: []byte(in.key), Value: v, Headers: env.Headers()}
}

// inputs makes n messages over keys k0..k(keys-1), spread over partitions.
func inputs(n, keys, partitions int) []input {
	out := make([]input, n)
	for i := range out {
		k := i % keys
		out[i] = input{id: uuid.New(), key: "k" + strconv.Itoa(k), amount: i%7 + 1, partition: int32(k % partitions)}
	}
	return out
}

// producer returns a client that produces to explicit partitions.
func producer(t testing.TB, url string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return kafkatest.ClientOf(t, url, append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
}

func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// counterModel is the read model of the tests: a counter per key, and one
// row per applied message with the number of times it was applied. Each
// batch notifies channel "<schema>_batches" with "<partition> <next
// offset>", delivered only when the batch commits.
type counterModel struct{ schema string }

func (m counterModel) create(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	s := pgx.Identifier{m.schema}.Sanitize()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS `+s+`.counters (key text PRIMARY KEY, total bigint NOT NULL);
		CREATE TABLE IF NOT EXISTS `+s+`.applied (id uuid PRIMARY KEY, key text NOT NULL, times int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

// channel is short: PostgreSQL refuses channel names over 63 bytes.
func (m counterModel) channel() string {
	sum := sha256.Sum256([]byte(m.schema))
	return "batches_" + hex.EncodeToString(sum[:8])
}

func (m counterModel) HandleBatch(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	s := pgx.Identifier{m.schema}.Sanitize()
	for _, msg := range msgs {
		if msg.Envelope.Type != typeAdded {
			return consume.BadMessage(msg, fmt.Errorf("unknown type %q", msg.Envelope.Type))
		}
		var a added
		if err := json.Unmarshal(msg.Value, &a); err != nil {
			return consume.BadMessage(msg, fmt.Errorf("decode %s: %w", msg.Envelope.Type, err))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s+`.counters (key, total) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET total = counters.total + excluded.total`, a.Key, a.Amount); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s+`.applied (id, key, times) VALUES ($1, $2, 1)
			ON CONFLICT (id) DO UPDATE SET times = applied.times + 1`, msg.Envelope.ID, a.Key); err != nil {
			return err
		}
	}
	last := msgs[len(msgs)-1]
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, m.channel(), fmt.Sprintf("%d %d", last.Partition, last.Offset+1))
	return err
}

// readModel is what a read model holds: counters by key, and the IDs
// applied with how often.
type readModel struct {
	counters map[string]int64
	applied  map[uuid.UUID]int
}

func (m counterModel) read(t testing.TB, pool *pgxpool.Pool) readModel {
	t.Helper()
	s := pgx.Identifier{m.schema}.Sanitize()
	rm := readModel{counters: map[string]int64{}, applied: map[uuid.UUID]int{}}
	rows, _ := pool.Query(context.Background(), `SELECT key, total FROM `+s+`.counters`)
	var k string
	var total int64
	if _, err := pgx.ForEachRow(rows, []any{&k, &total}, func() error { rm.counters[k] = total; return nil }); err != nil {
		t.Fatal(err)
	}
	rows, _ = pool.Query(context.Background(), `SELECT id, times FROM `+s+`.applied`)
	var id uuid.UUID
	var times int
	if _, err := pgx.ForEachRow(rows, []any{&id, &times}, func() error { rm.applied[id] = times; return nil }); err != nil {
		t.Fatal(err)
	}
	return rm
}

// checkExactlyOnce fails the test unless rm holds every input once and
// nothing else.
func checkExactlyOnce(t testing.TB, rm readModel, ins []input) {
	t.Helper()
	want := map[string]int64{}
	for _, in := range ins {
		want[in.key] += int64(in.amount)
		if got := rm.applied[in.id]; got != 1 {
			t.Errorf("message %s (key %s) applied %d times; want 1", in.id, in.key, got)
		}
	}
	if len(rm.applied) != len(ins) {
		t.Errorf("%d messages applied; want %d", len(rm.applied), len(ins))
	}
	for k, w := range want {
		if got := rm.counters[k]; got != w {
			t.Errorf("counter %s = %d; want %d", k, got, w)
		}
	}
	if len(rm.counters) != len(want) {
		t.Errorf("%d counters; want %d", len(rm.counters), len(want))
	}
}

// batches listens to a model's commit notifications.
type batches struct {
	conn    *pgx.Conn
	reached map[int32]int64
}

func listen(t testing.TB, m counterModel) *batches {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), `LISTEN `+pgx.Identifier{m.channel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return &batches{conn: conn, reached: map[int32]int64{}}
}

// waitFor waits until committed batches reached next offset end[p] in
// each partition p.
func (b *batches) waitFor(t testing.TB, end map[int32]int64, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	for !b.done(end) {
		n, err := b.conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("committed offsets %v; want %v: %v", b.reached, end, err)
		}
		var p int32
		var next int64
		fmt.Sscanf(n.Payload, "%d %d", &p, &next)
		b.reached[p] = max(b.reached[p], next)
	}
}

func (b *batches) done(end map[int32]int64) bool {
	for p, e := range end {
		if b.reached[p] < e {
			return false
		}
	}
	return true
}

// ends returns the end offset of each partition of topic.
func ends(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	offs, err := kafkatest.Admin(t).ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// storedOffsets returns kafka_offsets of group by partition.
func storedOffsets(t testing.TB, pool *pgxpool.Pool, schema, group string) map[int32]int64 {
	t.Helper()
	st, err := consume.Status(context.Background(), pool, schema, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range st.Partitions {
		out[p.Partition] = p.NextOffset
	}
	return out
}

func equalOffsets(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// running runs a consumer until the returned function is called, which
// returns Run's error.
func running(t testing.TB, run func(context.Context) error) func() error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() {
		err := run(ctx)
		if ctx.Err() == nil {
			t.Errorf("Run returned before it was stopped: %v", err)
		}
		done <- err
	}()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// logSignal is a slog handler that closes a channel on the first record
// whose message contains a string.
type logSignal struct {
	slog.Handler
	substr string
	once   *sync.Once
	ch     chan struct{}
}

func newLogSignal(substr string) logSignal {
	return logSignal{Handler: slog.DiscardHandler, substr: substr, once: new(sync.Once), ch: make(chan struct{})}
}

func (l logSignal) Enabled(context.Context, slog.Level) bool { return true }

func (l logSignal) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.substr) {
		l.once.Do(func() { close(l.ch) })
	}
	return nil
}

func (l logSignal) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logSignal) WithGroup(string) slog.Handler      { return l }

func wait(t testing.TB, ch <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("%s did not happen within %v", what, within)
	}
}

// churn produces ins in bursts while consumer children (the test binary
// running testName with env) die: before each of kills rounds a burst goes
// to every partition and a main member starts; every other round a second
// member joins or leaves, so the group rebalances; the main member is
// killed with SIGKILL after 1 to maxBatches batches.
func churn(t *testing.T, testName string, env []string, topic string, prod *kgo.Client, ins []input, kills, maxBatches int) {
	t.Helper()
	var second *child
	for i := range kills {
		burst := ins[i*len(ins)/kills : (i+1)*len(ins)/kills]
		recs := make([]*kgo.Record, 0, len(burst))
		for _, in := range burst {
			recs = append(recs, in.record(topic))
		}
		produce(t, prod, recs...)
		main := startChild(t, testName, append(env, envChildMember+"=main")...)
		switch {
		case i%4 == 1:
			second = startChild(t, testName, env...)
		case i%4 == 3 && second != nil:
			second.stop(t)
			second = nil
		}
		main.waitBatches(t, 1+rand.IntN(maxBatches))
		main.kill()
	}
	if second != nil {
		second.stop(t)
	}
}
