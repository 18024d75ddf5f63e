package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
	"github.com/stratadev/strata/projections/pgsink"
)

// pgtest.Run checks for leaked goroutines after the tests.
func TestMain(m *testing.M) {
	os.Exit(kafkatest.Run(m, func(m *testing.M) int { return elastictest.Run(m, pgtest.Run) }))
}

var quiet = slog.New(slog.DiscardHandler)

type orderPlaced struct {
	ID    string `json:"id"`
	Total int64  `json:"total"`
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[orderPlaced](reg, "OrderPlaced")
	return reg
}

// orderView is a rebuildable projection: order_view(order_id, total). It
// refuses negative totals while reject is set, and while gate is set it
// signals entered and waits for gate to close before each batch.
type orderView struct {
	mu      sync.Mutex
	reject  bool
	gate    chan struct{}
	entered chan struct{}
}

func (*orderView) Name() string      { return "order_view" }
func (*orderView) Handles() []string { return []string{"OrderPlaced"} }
func (*orderView) Tables() []string  { return []string{"order_view"} }

func (*orderView) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("order_view").Sanitize()+` (order_id text PRIMARY KEY, total bigint NOT NULL)`)
	return err
}

func (v *orderView) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	v.mu.Lock()
	reject, gate, entered := v.reject, v.gate, v.entered
	v.mu.Unlock()
	if gate != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
	var ids []string
	var totals []int64
	for _, ev := range events {
		o := ev.Data.(orderPlaced)
		if reject && o.Total < 0 {
			return fmt.Errorf("order %s: negative total %d", o.ID, o.Total)
		}
		ids, totals = append(ids, o.ID), append(totals, o.Total)
	}
	_, err := tx.Upsert(ctx, pgsink.Upsert{Table: tx.Table("order_view"),
		Columns: []string{"order_id", "total"}, Types: []string{"text", "bigint"}, Key: []string{"order_id"}}, ids, totals)
	return err
}

func (v *orderView) setReject(b bool) {
	v.mu.Lock()
	v.reject = b
	v.mu.Unlock()
}

// env is a fresh schema with the store and sink migrated.
type env struct {
	url    string
	schema string
	pool   *pgxpool.Pool
	store  *pgstore.Store
	sink   *pgsink.Sink
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, schema := pgtest.NewSchema(t)
	e := &env{url: pgtest.URL(t), schema: schema, pool: pool,
		store: pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet}),
		sink:  pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})}
	if _, err := e.store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sink.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// newBareEnv is a fresh schema with nothing in it.
func newBareEnv(t *testing.T) *env {
	t.Helper()
	pool, schema := pgtest.NewSchema(t)
	return &env{url: pgtest.URL(t), schema: schema, pool: pool}
}

// place appends an OrderPlaced event per total to stream order-<id>.
func (e *env) place(t *testing.T, totals ...int64) es.AppendResult {
	t.Helper()
	var res es.AppendResult
	for _, total := range totals {
		id := fmt.Sprintf("o%d", total)
		var err error
		res, err = e.store.Append(t.Context(), "order-"+id, es.Any,
			es.EventData{Type: "OrderPlaced", Data: fmt.Appendf(nil, `{"id":%q,"total":%d}`, id, total)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

func (e *env) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{e.schema, table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// buffer is an output that tests can read while a command writes to it,
// and wait on.
type buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newBuffer() *buffer { return &buffer{changed: make(chan struct{}, 1)} }

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor returns once the output contains s, failing the test after a
// minute.
func (b *buffer) waitFor(t *testing.T, s string) {
	t.Helper()
	b.waitForCount(t, s, 1)
}

// waitForCount returns once the output contains s n times.
func (b *buffer) waitForCount(t *testing.T, s string, n int) {
	t.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for strings.Count(b.String(), s) < n {
		select {
		case <-b.changed:
		case <-timeout.C:
			t.Fatalf("output never contained %q; it is:\n%s", s, b.String())
		}
	}
}

// run is one command execution.
type run struct {
	code           int
	stdout, stderr *buffer
}

// opts tune how a test runs a command.
type opts struct {
	projections []cli.Projection
	elastic     []cli.ElasticProjection
	kafka       []cli.KafkaProjection
	kafkaCfg    kafkasink.Config
	tty         bool
	env         map[string]string
	noDB        bool // do not pass --database-url and --schema
	stdout      *buffer
	stderr      *buffer
}

// cli runs the command line args in-process against e's schema.
func (e *env) cli(ctx context.Context, o opts, args ...string) run {
	r := run{stdout: o.stdout, stderr: o.stderr}
	if r.stdout == nil {
		r.stdout = newBuffer()
	}
	if r.stderr == nil {
		r.stderr = newBuffer()
	}
	var reg *es.Registry
	if len(o.projections)+len(o.elastic)+len(o.kafka) > 0 {
		reg = newRegistry()
	}
	root := cli.New(cli.Config{
		Projections:        o.projections,
		ElasticProjections: o.elastic,
		KafkaProjections:   o.kafka,
		Kafka:              o.kafkaCfg,
		Registry:           reg,
		Stdout:             r.stdout,
		Stderr:             r.stderr,
		Getenv:             func(k string) string { return o.env[k] },
		IsTerminal:         func(io.Writer) bool { return o.tty },
	})
	if !o.noDB {
		args = append([]string{"--database-url", e.url, "--schema", e.schema}, args...)
	}
	r.code = cli.Main(ctx, root, args)
	return r
}

func (e *env) mustRun(t *testing.T, o opts, args ...string) run {
	t.Helper()
	r := e.cli(t.Context(), o, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func (r run) check(t *testing.T, code int, outs ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	all := r.stdout.String() + r.stderr.String()
	for _, s := range outs {
		if !strings.Contains(all, s) {
			t.Errorf("output does not contain %q\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	sql = strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{e.schema}.Sanitize())
	if _, err := e.pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitVisible returns once readers of the log see pos: an open transaction
// elsewhere on the server (another test's) may hold them back for a while.
func (e *env) waitVisible(t *testing.T, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for recs, err := range e.store.Subscribe(ctx, es.SubscribeOptions{After: es.Start}) {
		if err != nil {
			t.Fatalf("wait until %s is visible: %v", pos, err)
		}
		if !recs[len(recs)-1].Position.Before(pos) {
			return
		}
	}
	t.Fatalf("wait until %s is visible: %v", pos, ctx.Err())
}
