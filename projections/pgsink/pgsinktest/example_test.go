package pgsinktest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/projections/pgsink/pgsinktest"
)

// In a test, t is the test's *testing.T and the schema one of its own.
// Here, printT prints what would fail the test.
func Example() {
	pool, schema, done := exampleDatabase(context.Background())
	defer done()
	inTest(func(t testing.TB) {
		sc := pgsinktest.Scenario{Pool: pool, Schema: schema, Registry: newRegistry(), Projection: stock{}}
		res := sc.Given(t,
			pgsinktest.Event{Stream: "order-1", Data: itemAdded{SKU: "tea", Qty: 2}},
			pgsinktest.Event{Stream: "order-2", Data: itemAdded{SKU: "tea", Qty: 3}},
			pgsinktest.Event{Stream: "order-2", Data: itemAdded{SKU: "jam", Qty: 1}},
		)
		res.Rows(`SELECT sku, qty FROM {{schema}}.stock ORDER BY sku`,
			[]any{"jam", 1},
			[]any{"tea", 5},
		)
		// A wrong expectation shows both sides.
		res.Rows(`SELECT sku, qty FROM {{schema}}.stock WHERE sku = 'tea'`,
			[]any{"tea", 4},
		)
	})
	// Output:
	// pgsinktest: rows of SELECT sku, qty FROM {{schema}}.stock WHERE sku = 'tea' differ:
	//       expected    actual
	// !   1  ("tea", 4)  ("tea", 5)
}

// printT stands in for the *testing.T of a test: it prints failures.
type printT struct {
	testing.TB
	failed bool
}

func (*printT) Helper()                  {}
func (*printT) Context() context.Context { return context.Background() }

func (p *printT) Errorf(format string, args ...any) {
	p.failed = true
	fmt.Printf(format+"\n", args...)
}

func (p *printT) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	runtime.Goexit()
}

// inTest runs test as a test would, and prints "passed" if nothing failed.
func inTest(test func(t testing.TB)) {
	p := &printT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(p)
	}()
	<-done
	if !p.failed {
		fmt.Println("passed")
	}
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
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		panic(err)
	}
	return pool, schema, func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			panic(err)
		}
		pool.Close()
	}
}
