package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// TestMain runs the tests against PostgreSQL and Elasticsearch (throwaway
// servers unless TEST_DATABASE_URL and TEST_ELASTICSEARCH_URL name some),
// then checks that no goroutine outlived them.
func TestMain(m *testing.M) {
	code := elastictest.Run(m, pgtest.Run)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var quiet = slog.New(slog.DiscardHandler)

// run runs the orders command in-process with args and the settings of
// env, and returns its exit code and output.
func run(t *testing.T, search readmodel.OrderSearch, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(cli.Config{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] },
		IsTerminal: func(io.Writer) bool { return false }}, search)
	code := cli.Main(t.Context(), root, args)
	return code, stdout.String(), stderr.String()
}

// After Elasticsearch lost its data, orders projections rebuild
// order_search brings every order back from the state it keeps in
// PostgreSQL.
func TestRebuildOrderSearch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.SchemaConfig{MaxConns: 8})
	client := elastictest.Client(t)
	alias := elastictest.Name(t)
	t.Cleanup(func() {
		if res, err := client.Indices.Delete([]string{alias + "-g*"}); err == nil {
			res.Body.Close()
		}
	})
	a, err := app.New(ctx, app.Config{Pool: pool, Schema: schema, Elastic: client, SearchAlias: alias, Logger: quiet,
		Worker: projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []any{
		orders.CreateProduct{ProductID: "tea", Name: "Assam Tea", PriceCents: 450},
		orders.PlaceOrder{OrderID: "o1", CustomerID: "c1", CustomerName: "Ann", Lines: []orders.LineRequest{{ProductID: "tea", Quantity: 1}}},
		orders.PlaceOrder{OrderID: "o2", CustomerID: "c2", CustomerName: "Bob", Lines: []orders.LineRequest{{ProductID: "tea", Quantity: 2}}},
	} {
		if _, err := a.Bus.Dispatch(ctx, c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	head, err := a.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Run(wctx); err != nil {
			t.Errorf("workers: %v", err)
		}
	})
	err = projections.WaitFor(ctx, a.Sink, readmodel.OrderSearchName, head)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	// Elasticsearch loses its data: the index and its alias are gone.
	res, err := client.Indices.GetAlias(client.Indices.GetAlias.WithName(alias))
	if err != nil || res.IsError() {
		t.Fatalf("get alias %s: %v %v", alias, res, err)
	}
	var indices map[string]any
	err = json.NewDecoder(res.Body).Decode(&indices)
	res.Body.Close()
	if err != nil || len(indices) != 1 {
		t.Fatalf("indices behind %s: %v %v", alias, indices, err)
	}
	for index := range indices {
		res, err := client.Indices.Delete([]string{index})
		if err != nil {
			t.Fatalf("delete %s: %v", index, err)
		}
		res.Body.Close()
		if res.IsError() {
			t.Fatalf("delete %s: %s", index, res.Status())
		}
	}

	env := map[string]string{cli.EnvDatabaseURL: pgtest.URL(t), cli.EnvSchema: schema, cli.EnvElasticsearchURL: elastictest.URL(t)}
	code, stdout, stderr := run(t, readmodel.OrderSearch{Alias: alias}, env, "projections", "rebuild", readmodel.OrderSearchName)
	if code != cli.ExitOK {
		t.Fatalf("orders projections rebuild order_search: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	search := &readmodel.Search{Client: client, Alias: alias}
	if err := search.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	found, err := search.Search(ctx, readmodel.SearchQuery{Text: "assam", Sort: "total"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range found.Orders {
		ids = append(ids, h.OrderID)
	}
	if want := []string{"o1", "o2"}; !slices.Equal(ids, want) {
		t.Errorf("search for assam after the rebuild found %q, want %q", ids, want)
	}

	// The projection is known to the command, with its status.
	code, stdout, stderr = run(t, readmodel.OrderSearch{Alias: alias}, env, "projections", "status", readmodel.OrderSearchName, "--sample", "0")
	if code != cli.ExitOK || !bytes.Contains([]byte(stdout), []byte("order_search")) {
		t.Errorf("orders projections status order_search: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
