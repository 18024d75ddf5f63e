package elasticsink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/pgsink"
)

type ProductAdded struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
}

// productSearch indexes one document per product, behind an alias.
type productSearch struct{ alias string }

func (productSearch) Name() string      { return "product_search" }
func (productSearch) Handles() []string { return []string{"ProductAdded"} }

func (p productSearch) Index() elasticsink.Index {
	return elasticsink.Index{
		Alias:    p.alias,
		Mappings: json.RawMessage(`{"properties":{"sku":{"type":"keyword"},"name":{"type":"text"}}}`),
		Settings: json.RawMessage(`{"number_of_shards":1,"number_of_replicas":0}`),
	}
}

func (p productSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(ProductAdded)
		// The document's version comes from the log, so a replay is harmless.
		if err := tx.Index(ev, p.alias, e.SKU, map[string]any{"sku": e.SKU, "name": e.Name}); err != nil {
			return err
		}
	}
	return nil
}

func Example() {
	ctx := context.Background()
	pool, client, alias, done := exampleServers(ctx) // your own pool and client
	defer done()
	reg := es.NewRegistry()
	es.Register[ProductAdded](reg, "ProductAdded")
	proj := productSearch{alias: alias}

	store := pgstore.New(pool, pgstore.Config{Schema: alias, Logger: quiet})
	pg := pgsink.New(pool, pgsink.Config{Schema: alias, Logger: quiet}) // checkpoints, leases, dead letters
	sink := elasticsink.New(client, pg, elasticsink.Config{Logger: quiet})
	// At every start: each creates only what is missing.
	if _, err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := pg.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := sink.EnsureIndex(ctx, proj); err != nil {
		panic(err)
	}

	var last es.AppendResult
	for _, e := range []ProductAdded{{"tea-1", "Green tea"}, {"tea-2", "Black tea"}, {"jam-1", "Plum jam"}} {
		data, err := reg.Encode(e, nil)
		if err != nil {
			panic(err)
		}
		if last, err = store.Append(ctx, "product-"+e.SKU, es.NoStream, data); err != nil {
			panic(err)
		}
	}

	w := elasticsink.NewWorker(store, reg, sink, proj, projections.Config{Logger: quiet})
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	wait, cancel := context.WithTimeout(ctx, time.Minute) // bounded read-your-writes
	defer cancel()
	if err := projections.WaitFor(wait, pg, proj.Name(), last.Position); err != nil {
		panic(err)
	}
	stop()
	fmt.Println("worker stopped:", <-stopped)

	// Make the writes visible to search now, for the example.
	res, err := client.Indices.Refresh(client.Indices.Refresh.WithIndex(alias))
	if err != nil {
		panic(err)
	}
	res.Body.Close()
	found, err := elasticsink.Search[struct{ Name string }](ctx, client, alias, map[string]any{
		"query": map[string]any{"match": map[string]any{"name": "tea"}},
		"sort":  []any{map[string]any{"sku": "asc"}},
	})
	if err != nil {
		panic(err)
	}
	for _, h := range found.Hits {
		fmt.Println(h.ID, h.Source.Name)
	}
	// Output:
	// worker stopped: <nil>
	// tea-1 Green tea
	// tea-2 Black tea
}

// exampleServers returns a pool on TEST_DATABASE_URL, a client of
// TEST_ELASTICSEARCH_URL and a fresh name for the schema and the alias, and a
// function that removes what the example made.
func exampleServers(ctx context.Context) (*pgxpool.Pool, *elasticsearch.Client, string, func()) {
	pool, err := pgxpool.New(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{os.Getenv("TEST_ELASTICSEARCH_URL")}, Transport: tr})
	if err != nil {
		panic(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "example_" + hex.EncodeToString(b)
	return pool, client, name, func() {
		if res, err := client.Indices.Delete([]string{name + "-g*"}); err == nil {
			res.Body.Close()
		}
		tr.CloseIdleConnections()
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			panic(err)
		}
		pool.Close()
	}
}
