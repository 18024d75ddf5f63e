package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// The command side of the tests: a counter per key, to which Add commands
// add.

type counter struct{ Total int }

func (c *counter) Apply(event any) error {
	switch e := event.(type) {
	case Added:
		c.Total += e.Amount
	default:
		return fmt.Errorf("counter: unexpected event %T", event)
	}
	return nil
}

type Added struct{ Amount int }

type Add struct {
	ID     string `json:"-"`
	Key    string
	Amount int
}

func (a Add) CommandID() string { return a.ID }

var errNegative = errors.New("amounts are positive")

var add = cqrs.OnAny(func(c Add) string { return c.Key },
	func(_ context.Context, _ *counter, c Add) ([]any, error) {
		if c.Amount < 0 {
			return nil, errNegative
		}
		return []any{Added{Amount: c.Amount}}, nil
	})

// mapAdd maps the test's messages to Add commands.
func mapAdd(_ context.Context, msg consume.Message) (any, error) {
	if msg.Envelope.Type != typeAdded {
		return nil, fmt.Errorf("unknown type %q", msg.Envelope.Type)
	}
	var a added
	if err := json.Unmarshal(msg.Value, &a); err != nil {
		return nil, fmt.Errorf("decode %s: %w", msg.Envelope.Type, err)
	}
	return Add{ID: msg.CommandID(), Key: a.Key, Amount: a.Amount}, nil
}

type commandsEnv struct {
	url, topic, group, schema string
	pool                      *pgxpool.Pool
	store                     *pgstore.Store
}

func newCommandsEnv(t *testing.T, partitions int) commandsEnv {
	t.Helper()
	url := kafkatest.URL(t)
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
	e := commandsEnv{url: url, topic: kafkatest.Topic(t, partitions), group: kafkatest.Name(t), schema: schema, pool: pool}
	e.store = newStore(t, pool, schema)
	return e
}

func newStore(t testing.TB, pool *pgxpool.Pool, schema string) *pgstore.Store {
	t.Helper()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	if _, err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

func newBus(store es.Store, mw ...cqrs.Middleware) *cqrs.Bus {
	reg := es.NewRegistry()
	es.Register[Added](reg, "Added")
	repo := es.NewRepository(store, reg, func(string) *counter { return &counter{} }, es.RepositoryConfig{StreamPrefix: "counter-"})
	bus := cqrs.NewBus()
	bus.Use(mw...)
	cqrs.Handle(bus, cqrs.Aggregate(repo, add, cqrs.AggregateConfig{}))
	return bus
}

func (e commandsEnv) config(opts ...kgo.Opt) consume.Config {
	return consume.Config{Brokers: []string{e.url}, Group: e.group, Topics: []string{e.topic}, Pool: e.pool, Schema: e.schema,
		Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, ClientOptions: opts}
}

func (e commandsEnv) commands(t testing.TB, cfg consume.Config, bus *cqrs.Bus, mapFn consume.MapFunc) *consume.Commands {
	t.Helper()
	c, err := consume.NewCommands(cfg, bus, mapFn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitEvents waits until the store holds n events, reading its log as it
// grows.
func waitEvents(t testing.TB, store *pgstore.Store, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	seen := 0
	for batch, err := range store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("%d events; want %d: %v", seen, n, err)
		}
		if seen += len(batch); seen >= n {
			return
		}
	}
	t.Fatalf("%d events; want %d", seen, n)
}

// checkCommandsOnce fails the test unless each key's stream holds one
// event per input with that key, adding up to its amounts.
func checkCommandsOnce(t testing.TB, store *pgstore.Store, pool *pgxpool.Pool, schema string, ins []input) {
	t.Helper()
	want := map[string][]int{}
	for _, in := range ins {
		want["counter-"+in.key] = append(want["counter-"+in.key], in.amount)
	}
	total := 0
	for stream, amounts := range want {
		recs, err := store.ReadStream(context.Background(), stream, es.ReadStreamOptions{})
		if err != nil && !errors.Is(err, es.ErrStreamNotFound) {
			t.Fatal(err)
		}
		if len(recs) != len(amounts) {
			t.Errorf("stream %s has %d events; want %d, one per message", stream, len(recs), len(amounts))
		}
		total += len(recs)
	}
	// Counted in the table: a read of the log waits for other tests'
	// transactions.
	var all int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{schema}.Sanitize()+`.events`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if all != total {
		t.Errorf("the log has %d events; want %d", all, total)
	}
}

// committed returns the group's offsets committed to Kafka by partition.
func committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	offs, err := kafkatest.Admin(t).FetchOffsets(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range offs[topic] {
		out[p] = o.At
	}
	return out
}

// Messages become one command each; the offsets committed are the ends.
func TestCommandsEndToEnd(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 3)
	ins := inputs(200, 10, 3)
	prod := producer(t, e.url)
	for _, in := range ins {
		produce(t, prod, in.record(e.topic))
	}
	stop := running(t, e.commands(t, e.config(), newBus(e.store), mapAdd).Run)
	waitEvents(t, e.store, len(ins), 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCommandsOnce(t, e.store, e.pool, e.schema, ins)
	end := ends(t, e.topic)
	if got := committed(t, e.group, e.topic); !equalOffsets(got, end) {
		t.Errorf("committed offsets %v; want the ends %v", got, end)
	}
	if got := storedOffsets(t, e.pool, e.schema, e.group); !equalOffsets(got, end) {
		t.Errorf("offsets in kafka_offsets %v; want the ends %v", got, end)
	}
}

// A command that the domain rejects is an outcome: counted, committed, and
// the consumer goes on.
func TestCommandsRejected(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	ins := inputs(10, 2, 1)
	bad := input{id: ins[0].id, key: "k0", amount: -5}
	bad.id[0] ^= 0xff
	prod := producer(t, e.url)
	produce(t, prod, ins[0].record(e.topic), bad.record(e.topic))
	for _, in := range ins[1:] {
		produce(t, prod, in.record(e.topic))
	}
	stop := running(t, e.commands(t, e.config(), newBus(e.store), mapAdd).Run)
	waitEvents(t, e.store, len(ins), 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCommandsOnce(t, e.store, e.pool, e.schema, ins)
	st, err := consume.Status(t.Context(), e.pool, e.schema, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rejected != 1 || st.DeadLettered != 0 || st.Kind != consume.KindCommands {
		t.Errorf("status rejected %d dead-lettered %d kind %q; want 1, 0, %q", st.Rejected, st.DeadLettered, st.Kind, consume.KindCommands)
	}
	if got, want := committed(t, e.group, e.topic), ends(t, e.topic); !equalOffsets(got, want) {
		t.Errorf("committed offsets %v; want the ends %v", got, want)
	}
}

// A mapping that returns a command without an ID stops the consumer at
// the first message, whatever the policy, and says how to fix it.
func TestCommandsWithoutID(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	produce(t, producer(t, e.url), inputs(1, 1, 1)[0].record(e.topic))
	cfg := e.config()
	cfg.ErrorPolicy = 1 // PolicyDeadLetter: a missing ID stops all the same
	noID := func(ctx context.Context, msg consume.Message) (any, error) {
		cmd, err := mapAdd(ctx, msg)
		a := cmd.(Add)
		a.ID = ""
		return a, err
	}
	err := e.commands(t, cfg, newBus(e.store), noID).Run(t.Context())
	var stalled *consume.StalledError
	if !errors.As(err, &stalled) || !errors.Is(err, consume.ErrNotIdentified) {
		t.Fatalf("Run returned %v; want a *StalledError wrapping ErrNotIdentified", err)
	}
	if !strings.Contains(err.Error(), "msg.CommandID()") || stalled.Offset != 0 || stalled.Topic != e.topic {
		t.Errorf("error %q at topic %s offset %d; want the advice to use msg.CommandID(), at %s offset 0", err, stalled.Topic, stalled.Offset, e.topic)
	}
}

// A transient failure of the dispatch is retried, shown as retrying in the
// status meanwhile, and nothing is applied twice or lost.
func TestCommandsRetryTransient(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	ins := inputs(20, 3, 1)
	prod := producer(t, e.url)
	for _, in := range ins {
		produce(t, prod, in.record(e.topic))
	}
	var calls atomic.Int32
	release, third := make(chan struct{}), make(chan struct{})
	flaky := func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			switch n := calls.Add(1); {
			case n <= 2:
				return cqrs.Result{}, errors.New("flaky store")
			case n == 3:
				close(third)
				<-release
			}
			return next(ctx, cmd)
		}
	}
	cfg := e.config()
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, time.Millisecond
	stop := running(t, e.commands(t, cfg, newBus(e.store, flaky), mapAdd).Run)
	// The third call is the second retry: the status says retrying by then.
	wait(t, third, 60*time.Second, "the second retry")
	st, err := consume.Status(t.Context(), e.pool, e.schema, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != consume.StateRetrying || !strings.Contains(st.Failure, "flaky store") || st.Attempts != 2 {
		t.Errorf("status %q failure %q attempts %d; want %q, the error, 2", st.State, st.Failure, st.Attempts, consume.StateRetrying)
	}
	close(release)
	waitEvents(t, e.store, len(ins), 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCommandsOnce(t, e.store, e.pool, e.schema, ins)
}

// Consumer processes killed with SIGKILL at random moments right after a
// dispatch (before its offset is committed), while messages keep coming
// and a second member of the group joins and leaves, apply no command
// twice and miss none.
func TestCommandsKilled(t *testing.T) {
	if os.Getenv(envChild) == "commands" {
		pool := pgtest.NamedPool(t, "consume-child")
		store := pgstore.New(pool, pgstore.Config{Schema: os.Getenv(envChildSchema), Logger: quiet})
		printing := func(next cqrs.Next) cqrs.Next {
			return func(ctx context.Context, cmd any) (cqrs.Result, error) {
				res, err := next(ctx, cmd)
				fmt.Println("batch dispatched")
				return res, err
			}
		}
		c, err := consume.NewCommands(childConfig(pool), newBus(store, printing), mapAdd)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Run(childContext(t)); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	e := newCommandsEnv(t, 3)
	env := []string{envChild + "=commands", envChildSchema + "=" + e.schema, envChildTopic + "=" + e.topic,
		envChildGroup + "=" + e.group, envChildKafka + "=" + e.url}
	ins := inputs(600, 20, 3)
	prod := producer(t, e.url)
	// A few dispatches before each kill: with a second member, the main
	// one may hold a single partition, with a third of the burst.
	churn(t, "TestCommandsKilled", env, e.topic, prod, ins, 12, 5)
	// A last message in each partition: once their commands are applied,
	// so is everything before them, and stopping commits their offsets.
	for p := range int32(3) {
		in := input{id: uuid.New(), key: fmt.Sprintf("last%d", p), amount: 1, partition: p}
		ins = append(ins, in)
		produce(t, prod, in.record(e.topic))
	}
	stop := running(t, e.commands(t, e.config(kgo.SessionTimeout(6*time.Second), kgo.InstanceID("main")), newBus(e.store), mapAdd).Run)
	waitEvents(t, e.store, len(ins), 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCommandsOnce(t, e.store, e.pool, e.schema, ins)
	if got, want := committed(t, e.group, e.topic), ends(t, e.topic); !equalOffsets(got, want) {
		t.Errorf("committed offsets %v; want the ends %v", got, want)
	}
}

// Run stopped before it got going returns nil, as a stop at any other
// moment does.
func TestRunStoppedDuringStart(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.commands(t, e.config(), newBus(e.store), mapAdd).Run(ctx); err != nil {
		t.Errorf("Commands.Run: %v; want nil", err)
	}
	rm, err := consume.NewReadModel(e.config(), counterModel{schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.Run(ctx); err != nil {
		t.Errorf("ReadModel.Run: %v; want nil", err)
	}
}

// A message the mapping makes no command of is committed without a
// dispatch, and the consumer goes on.
func TestCommandsSkipped(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	ins := inputs(20, 3, 1)
	prod := producer(t, e.url)
	var kept []input
	for _, in := range ins {
		produce(t, prod, in.record(e.topic))
		if in.amount%2 == 1 {
			kept = append(kept, in)
		}
	}
	odd := func(ctx context.Context, msg consume.Message) (any, error) {
		cmd, err := mapAdd(ctx, msg)
		if err == nil && cmd.(Add).Amount%2 == 0 {
			return nil, nil
		}
		return cmd, err
	}
	stop := running(t, e.commands(t, e.config(), newBus(e.store), odd).Run)
	waitEvents(t, e.store, len(kept), 60*time.Second)
	// The last messages may be skipped ones, which append nothing: wait
	// for the group's offsets to reach the ends before stopping. The
	// broker gives no signal, so poll it.
	want := ends(t, e.topic)
	deadline := time.Now().Add(60 * time.Second)
	for got := committed(t, e.group, e.topic); !equalOffsets(got, want); got = committed(t, e.group, e.topic) {
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets %v; want the ends %v", got, want)
		}
		time.Sleep(50 * time.Millisecond) // polling the broker, not synchronizing goroutines
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCommandsOnce(t, e.store, e.pool, e.schema, kept)
}

// A consumer of a topic that does not exist waits for it without joining
// its group: it says so in the log, naming the topic, rather than waiting
// without a word.
func TestMissingTopicIsLogged(t *testing.T) {
	t.Parallel()
	e := newCommandsEnv(t, 1)
	missing := kafkatest.Name(t) + "-missing"
	records := make(chan slog.Record, 256)
	cfg := e.config()
	cfg.Topics = []string{e.topic, missing}
	cfg.Logger = slog.New(recordHandler{records})
	stop := running(t, e.commands(t, cfg, newBus(e.store), mapAdd).Run)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case r := <-records:
			if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "topics do not exist") {
				continue
			}
			var named []string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "missing" {
					named = append(named, fmt.Sprint(a.Value.Any()))
				}
				return true
			})
			if want := fmt.Sprint([]string{missing}); len(named) != 1 || named[0] != want {
				t.Errorf("the warning names %v; want %s", named, want)
			}
			if err := stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			return
		case <-deadline:
			t.Fatal("no warning about the missing topic within 30s")
		}
	}
}

// recordHandler sends every record to a channel, dropping those it has no
// room for.
type recordHandler struct{ ch chan<- slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Clone():
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
