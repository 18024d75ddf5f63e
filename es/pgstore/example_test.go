package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

func Example() {
	ctx := context.Background()
	pool, schema, done := exampleDatabase(ctx) // your own *pgxpool.Pool
	defer done()

	store := pgstore.New(pool, pgstore.Config{Schema: schema})
	if _, err := store.Migrate(ctx); err != nil { // safe at every start
		panic(err)
	}

	// A new stream: expect that it does not exist yet.
	placed := es.EventData{Type: "OrderPlaced", Data: []byte(`{"order":"42","total":30}`)}
	res, err := store.Append(ctx, "order-42", es.NoStream, placed)
	if err != nil {
		panic(err)
	}
	fmt.Println("appended", res.Stream, "version", res.Version)

	// A writer that did not see version 1 is refused, and writes nothing.
	_, err = store.Append(ctx, "order-42", es.NoStream, placed)
	var conflict *es.VersionConflictError
	fmt.Println(errors.Is(err, es.ErrWrongExpectedVersion), errors.As(err, &conflict), "actual version", conflict.Actual)

	// One that did appends after it.
	paid := es.EventData{Type: "OrderPaid", Data: []byte(`{"order": "42"}`)}
	if _, err := store.Append(ctx, "order-42", es.Exact(1), paid); err != nil {
		panic(err)
	}

	recs, err := store.ReadStream(ctx, "order-42", es.ReadStreamOptions{})
	if err != nil {
		panic(err)
	}
	for _, r := range recs {
		fmt.Println(r.Version, r.Type, string(r.Data)) // read back as it was written
	}
	// Output:
	// appended order-42 version 1
	// true true actual version 1
	// 1 OrderPlaced {"order":"42","total":30}
	// 2 OrderPaid {"order": "42"}
}

// Subscribe reads the global log from a position, then waits for new
// events; a projection worker does this for you.
func ExampleStore_Subscribe() {
	ctx := context.Background()
	pool, schema, done := exampleDatabase(ctx)
	defer done()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if _, err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	for _, stream := range []string{"order-1", "order-2"} {
		ev := es.EventData{Type: "OrderPlaced", Data: []byte(`{}`)}
		if _, err := store.Append(ctx, stream, es.NoStream, ev); err != nil {
			panic(err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a subscription runs until ctx ends
	defer cancel()
	seen := 0
	for batch, err := range store.Subscribe(ctx, es.SubscribeOptions{After: es.Start}) {
		if err != nil {
			panic(err)
		}
		for _, r := range batch {
			fmt.Println(r.Stream, r.Type) // r.Position is the checkpoint to resume after
			seen++
		}
		if seen == 2 {
			break
		}
	}
	// Output:
	// order-1 OrderPlaced
	// order-2 OrderPlaced
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
