package kafkasink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
	"github.com/stratadev/strata/projections/pgsink"
)

// pgtest.Run checks for leaked goroutines after the tests.
func TestMain(m *testing.M) { os.Exit(kafkatest.Run(m, pgtest.Run)) }

var quiet = slog.New(slog.DiscardHandler)

// The PostgreSQL sink keeps a Kafka sink's state.
var _ kafkasink.Keeper = (*pgsink.Sink)(nil)

// Domain events of the order service: internal, free to change.
type orderPlaced struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Total    int64  `json:"total"`
	Seq      int    `json:"seq"`
}

type orderShipped struct {
	Order string `json:"order"`
	Fail  bool   `json:"fail,omitempty"` // the handler refuses it, on purpose
	Pad   int    `json:"pad,omitempty"`  // bytes of padding in the message: Kafka refuses 2 MiB
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[orderPlaced](reg, "OrderPlaced")
	es.Register[orderShipped](reg, "OrderShipped")
	return reg
}

// Integration events: the public, versioned contract other services read.
type orderPlacedV1 struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	TotalCents int64  `json:"total_cents"`
}

type orderShippedV1 struct {
	OrderID string `json:"order_id"`
	Note    string `json:"note,omitempty"`
}

// orderEvents publishes the order events to one topic.
type orderEvents struct{ name, topic string }

func (p orderEvents) Name() string { return p.name }
func (orderEvents) Handles() []string {
	return []string{"OrderPlaced", "OrderShipped"}
}

func (p orderEvents) HandleBatch(ctx context.Context, tx *kafkasink.Tx, events []projections.Event) error {
	for _, ev := range events {
		var (
			typ string
			v   any
		)
		switch e := ev.Data.(type) {
		case orderPlaced:
			typ, v = "order.placed.v1", orderPlacedV1{OrderID: e.Order, CustomerID: e.Customer, TotalCents: e.Total}
		case orderShipped:
			if e.Fail {
				return fmt.Errorf("order %s cannot ship", e.Order)
			}
			typ, v = "order.shipped.v1", orderShippedV1{OrderID: e.Order, Note: strings.Repeat("x", e.Pad)}
		default:
			return fmt.Errorf("unexpected %T", ev.Data)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := tx.Publish(p.topic, ev, typ, b); err != nil {
			return err
		}
	}
	return nil
}

type env struct {
	url    string
	pool   *pgxpool.Pool
	schema string
	store  *pgstore.Store
	pg     *pgsink.Sink
	sink   *kafkasink.Sink
	reg    *es.Registry
	proj   orderEvents
	cfg    kafkasink.Config
}

// newEnv makes a schema, a topic of 3 partitions and a projection of its
// own for the test, on the test broker.
func newEnv(t *testing.T) env {
	t.Helper()
	url := kafkatest.URL(t) // skip or fail first, before PostgreSQL
	return newEnvOn(t, url, kafkatest.Topic(t, 3))
}

func newEnvOn(t *testing.T, url, topic string) env {
	t.Helper()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 16})
	e := env{url: url, pool: pool, schema: schema, reg: newRegistry(),
		proj: orderEvents{name: kafkatest.Name(t), topic: topic}}
	e.cfg = testConfig(url, topic)
	e.open(t)
	return e
}

func testConfig(url, topic string) kafkasink.Config {
	return kafkasink.Config{
		Brokers: []string{url}, Topics: []kafkasink.Topic{{Name: topic}},
		CheckpointTopic: "strata.checkpoints.test", Logger: quiet,
	}
}

// open makes the env's store, keeper and sink on its schema.
func (e *env) open(t *testing.T) {
	t.Helper()
	e.store = pgstore.New(e.pool, pgstore.Config{Schema: e.schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	if _, err := e.store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.pg = pgsink.New(e.pool, pgsink.Config{Schema: e.schema, Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	if _, err := e.pg.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.sink = e.newSink(t, e.cfg)
}

// newSink returns another sink on the env's keeper, closed when the test
// ends.
func (e env) newSink(t *testing.T, cfg kafkasink.Config) *kafkasink.Sink {
	s := kafkasink.New(e.pg, cfg)
	t.Cleanup(s.Close)
	return s
}

func (e env) place(t *testing.T, stream string, seq int) es.Position {
	t.Helper()
	return e.append(t, stream, "OrderPlaced", orderPlaced{Order: stream, Customer: "c-" + stream, Total: int64(100 * seq), Seq: seq})
}

func (e env) append(t *testing.T, stream, typ string, v any) es.Position {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.store.Append(t.Context(), stream, es.Any, es.EventData{Type: typ, Data: b,
		Metadata: es.Metadata{es.MetaCorrelationID: "corr-" + stream}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// run runs a worker until the returned function is called, which returns
// Run's error; done receives Run's error when it returns by itself.
func (e env) run(t *testing.T, sink *kafkasink.Sink, cfg projections.Config) (stop func() error, done <-chan error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 200*time.Millisecond
	cfg.PollInterval = 50 * time.Millisecond
	w := kafkasink.NewWorker(e.store, e.reg, sink, e.proj, cfg)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	result := make(chan error, 1)
	finished := make(chan struct{})
	var err error
	go func() {
		err = w.Run(ctx)
		result <- err
		close(finished)
	}()
	stop = func() error {
		cancel()
		<-finished
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, result
}

func (e env) waitFor(t *testing.T, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, e.pg, e.proj.name, pos); err != nil {
		t.Fatal(err)
	}
}

// log reads the log up to head.
func (e env) log(t *testing.T, head es.Position) []es.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []es.Record
	for batch, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, batch...)
		if len(out) > 0 && !out[len(out)-1].Position.Before(head) {
			return out
		}
	}
	t.Fatalf("read %d events, not up to %s", len(out), head)
	return nil
}

// readAll reads every message of topic a read_committed consumer sees,
// up to the end of each partition as of the call.
func readAll(t *testing.T, url, topic string) []*kgo.Record {
	t.Helper()
	return readTopic(t, url, topic, kgo.ReadCommitted())
}

func readTopic(t *testing.T, url, topic string, level kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(kafkatest.ClientOf(t, url))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset - 1
		}
	})
	cl := kafkatest.ClientOf(t, url, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level), kgo.KeepControlRecords())
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d messages, partitions %v not read to their end: %v", topic, len(out), want, ctx.Err())
		}
		if err := fs.Err(); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("read %s: %v", topic, err)
		}
		for _, r := range fs.Records() {
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkExactlyOnce checks that msgs hold one message per record of the
// log, by ce_id, keyed by its stream, in stream order per key.
func checkExactlyOnce(t *testing.T, log []es.Record, msgs []*kgo.Record) {
	t.Helper()
	seen := make(map[string]int)
	last := make(map[string]int64)
	for _, m := range msgs {
		env, err := kafkasink.ParseHeaders(m.Headers)
		if err != nil {
			t.Fatalf("message %s[%d]@%d: %v", m.Topic, m.Partition, m.Offset, err)
		}
		seen[env.ID.String()]++
		if string(m.Key) != env.Subject {
			t.Errorf("message %s: key %q, want the stream %q", env.ID, m.Key, env.Subject)
		}
		if env.Version <= last[string(m.Key)] {
			t.Errorf("key %s: version %d after %d; want increasing versions", m.Key, env.Version, last[string(m.Key)])
		}
		last[string(m.Key)] = env.Version
	}
	for _, r := range log {
		if n := seen[r.ID.String()]; n != 1 {
			t.Errorf("event %s (%s@%d): seen %d times by a read_committed consumer, want 1", r.ID, r.Stream, r.Version, n)
		}
	}
	if len(msgs) != len(log) {
		t.Errorf("read %d messages, want %d (one per event of the log)", len(msgs), len(log))
	}
}
