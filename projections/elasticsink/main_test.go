package elasticsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestMain(m *testing.M) { os.Exit(elastictest.Run(m, pgtest.Run)) }

var quiet = slog.New(slog.DiscardHandler)

// The PostgreSQL sink keeps an Elasticsearch sink's checkpoints.
var _ elasticsink.Keeper = (*pgsink.Sink)(nil)

// Events of the order-search projection.
type orderPlaced struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Product  string `json:"product"`
	Total    any    `json:"total"` // a number; a string breaks the mapping on purpose
	Status   string `json:"status"`
}

type statusChanged struct {
	Order  string `json:"order"`
	Status string `json:"status"`
}

type orderCancelled struct {
	Order string `json:"order"`
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[orderPlaced](reg, "OrderPlaced")
	es.Register[statusChanged](reg, "StatusChanged")
	es.Register[orderCancelled](reg, "OrderCancelled")
	return reg
}

type orderDoc struct {
	Customer string `json:"customer"`
	Product  string `json:"product"`
	Total    any    `json:"total"`
	Status   string `json:"status"`
	Stream   string `json:"stream"`
}

// orderSearch indexes one document per order.
type orderSearch struct{ alias string }

func (p orderSearch) Name() string { return "search-" + p.alias }
func (orderSearch) Handles() []string {
	return []string{"OrderPlaced", "StatusChanged", "OrderCancelled"}
}

func (p orderSearch) Index() elasticsink.Index {
	return elasticsink.Index{
		Alias: p.alias,
		Mappings: json.RawMessage(`{"dynamic":"strict","properties":{
			"customer":{"type":"keyword"},
			"product":{"type":"text","analyzer":"standard"},
			"total":{"type":"long"},
			"status":{"type":"keyword"},
			"stream":{"type":"keyword"}}}`),
		Settings: json.RawMessage(`{"number_of_shards":1,"number_of_replicas":0}`),
	}
}

func (p orderSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		var err error
		switch e := ev.Data.(type) {
		case orderPlaced:
			err = tx.Index(ev, p.alias, e.Order, orderDoc{Customer: e.Customer, Product: e.Product, Total: e.Total, Status: e.Status, Stream: ev.Record.Stream})
		case statusChanged:
			err = tx.Update(ev, p.alias, e.Order, map[string]any{"status": e.Status})
		case orderCancelled:
			err = tx.Delete(ev, p.alias, e.Order)
		default:
			err = fmt.Errorf("unexpected %T", ev.Data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type env struct {
	pool   *pgxpool.Pool
	store  *pgstore.Store
	pg     *pgsink.Sink
	sink   *elasticsink.Sink
	client *elasticsearch.Client
	reg    *es.Registry
	proj   orderSearch
}

func newEnv(t *testing.T) env {
	t.Helper()
	return newEnvWith(t, elastictest.Client(t), elasticsink.Config{})
}

func newEnvWith(t *testing.T, client *elasticsearch.Client, cfg elasticsink.Config) env {
	t.Helper()
	elastictest.URL(t) // skip or fail first, before PostgreSQL
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 24})
	return newEnvOn(t, pool, schema, client, cfg)
}

// newEnvOn makes an env in schema of pool's database.
func newEnvOn(t *testing.T, pool *pgxpool.Pool, schema string, client *elasticsearch.Client, cfg elasticsink.Config) env {
	t.Helper()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	if _, err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	pg := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	if _, err := pg.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 200*time.Millisecond
	e := env{pool: pool, store: store, pg: pg, sink: elasticsink.New(client, pg, cfg), client: client,
		reg: newRegistry(), proj: orderSearch{alias: elastictest.Name(t)}}
	admin := elastictest.Client(t)
	t.Cleanup(func() {
		res, err := admin.Indices.Delete([]string{e.proj.alias + "-g*"}, admin.Indices.Delete.WithIgnoreUnavailable(true),
			admin.Indices.Delete.WithAllowNoIndices(true))
		if err == nil {
			res.Body.Close()
		}
	})
	if _, err := e.sink.EnsureIndex(t.Context(), e.proj); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e env) append(t *testing.T, stream string, events ...any) es.Position {
	t.Helper()
	var data []es.EventData
	for _, ev := range events {
		typ := map[string]string{"elasticsink_test.orderPlaced": "OrderPlaced", "elasticsink_test.statusChanged": "StatusChanged",
			"elasticsink_test.orderCancelled": "OrderCancelled"}[fmt.Sprintf("%T", ev)]
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, es.EventData{Type: typ, Data: b})
	}
	res, err := e.store.Append(t.Context(), stream, es.Any, data...)
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// run runs a worker until ctx ends; the returned function stops it and
// returns Run's error.
func (e env) run(t *testing.T, cfg projections.Config) func() error {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 200*time.Millisecond
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, e.proj, cfg)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var stopped bool
	var err error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (e env) waitFor(t *testing.T, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, e.pg, e.proj.Name(), pos); err != nil {
		t.Fatal(err)
	}
}

func (e env) refresh(t *testing.T) {
	t.Helper()
	res, err := e.client.Indices.Refresh(e.client.Indices.Refresh.WithIndex(e.proj.alias))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.IsError() {
		t.Fatalf("refresh: %s", res.Status())
	}
}

// docs returns every document of the alias, by ID, with its version.
func (e env) docs(t *testing.T) map[string]elasticsink.Hit[orderDoc] {
	t.Helper()
	e.refresh(t)
	r, err := elasticsink.Search[orderDoc](t.Context(), e.client, e.proj.alias,
		map[string]any{"size": 10000, "version": true, "query": map[string]any{"match_all": map[string]any{}}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]elasticsink.Hit[orderDoc])
	for _, h := range r.Hits {
		out[h.ID] = h
	}
	return out
}

func version(t *testing.T, p es.Position) int64 {
	t.Helper()
	v, err := elasticsink.PackedVersion(p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// events reads the log up to head and decodes it, waiting for readers to
// see head (another test's open transaction may hold them back a moment).
func (e env) events(t *testing.T, head es.Position) []projections.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []projections.Event
	for batch, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			v, err := e.reg.Decode(r)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, projections.Event{Record: r, Data: v})
		}
		if len(out) > 0 && !out[len(out)-1].Record.Position.Before(head) {
			return out
		}
	}
	t.Fatalf("read %d events, not up to %s", len(out), head)
	return nil
}
