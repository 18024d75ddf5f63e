package pgsink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

type ItemAdded struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// stockLevels keeps the quantity of every SKU in a table of its own.
type stockLevels struct{}

func (stockLevels) Name() string      { return "stock_levels" }
func (stockLevels) Handles() []string { return []string{"ItemAdded"} }
func (stockLevels) Tables() []string  { return []string{"stock_levels"} }

func (stockLevels) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("stock_levels").Sanitize()+` (sku text PRIMARY KEY, qty int NOT NULL)`)
	return err
}

func (stockLevels) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(ItemAdded)
		_, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("stock_levels").Sanitize()+` AS s (sku, qty) VALUES ($1, $2)
			ON CONFLICT (sku) DO UPDATE SET qty = s.qty + excluded.qty`, e.SKU, e.Qty)
		if err != nil {
			return err // the batch and its checkpoint roll back together
		}
	}
	return nil
}

func Example() {
	ctx := context.Background()
	pool, schema, done := exampleDatabase(ctx) // your own *pgxpool.Pool
	defer done()
	reg := es.NewRegistry()
	es.Register[ItemAdded](reg, "ItemAdded")

	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	// At every start: each creates only what is missing.
	if _, err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := sink.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := sink.EnsureTables(ctx, stockLevels{}); err != nil {
		panic(err)
	}

	w := projections.NewWorker(store, reg, sink, stockLevels{}, projections.Config{Logger: quiet})
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()

	var last es.AppendResult
	for _, e := range []ItemAdded{{"tea", 2}, {"jam", 1}, {"tea", 3}} {
		data, err := reg.Encode(e, nil)
		if err != nil {
			panic(err)
		}
		if last, err = store.Append(ctx, "warehouse-1", es.Any, data); err != nil {
			panic(err)
		}
	}
	// Read your writes: wait, bounded, until the projection has applied them.
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := projections.WaitFor(wait, sink, "stock_levels", last.Position); err != nil {
		panic(err)
	}
	stop()
	fmt.Println("worker stopped:", <-stopped)

	rows, err := pool.Query(ctx, `SELECT sku, qty FROM `+pgx.Identifier{schema, "stock_levels"}.Sanitize()+` ORDER BY sku`)
	if err != nil {
		panic(err)
	}
	var sku string
	var qty int
	if _, err := pgx.ForEachRow(rows, []any{&sku, &qty}, func() error {
		fmt.Println(sku, qty)
		return nil
	}); err != nil {
		panic(err)
	}
	// Output:
	// worker stopped: <nil>
	// jam 1
	// tea 5
}

// exampleDatabase returns a pool on TEST_DATABASE_URL and a fresh schema,
// and a function that drops the schema and closes the pool.
func exampleDatabase(ctx context.Context) (*pgxpool.Pool, string, func()) {
	pool, err := pgxpool.New(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "example_" + hex.EncodeToString(b)
	return pool, schema, func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			panic(err)
		}
		pool.Close()
	}
}
