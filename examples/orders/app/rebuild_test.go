package app_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
	"github.com/stratadev/strata/projections/pgsink"
)

var seedFlag = flag.Uint64("seed", 0, "seed of TestLiveEqualsRebuild; 0 picks one and logs it")

// TestLiveEqualsRebuild runs random commands against the example while its
// projection workers run with random batch sizes, stopping and restarting
// them and sometimes waiting for them between commands, and then compares
// every live read model with the same projection run from scratch over the
// whole log. Reproduce a failure with -run TestLiveEqualsRebuild -seed N.
func TestLiveEqualsRebuild(t *testing.T) {
	t.Parallel()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (go test -run TestLiveEqualsRebuild -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	e := start(t, false)
	ctx := t.Context()
	g := &generator{t: t, e: e, rng: rng}

	for range 3 + rng.IntN(3) {
		g.createProduct(ctx)
	}
	var last es.Position // the position of the last write
	for phase := range 4 + rng.IntN(3) {
		cfg := projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond,
			BatchSize: 1 + rng.IntN(8), BatchWait: []time.Duration{-1, time.Millisecond, 20 * time.Millisecond}[rng.IntN(3)]}
		t.Logf("phase %d: batch size %d, batch wait %s", phase, cfg.BatchSize, cfg.BatchWait)
		stop := e.runWorkers(cfg)
		for range 10 + rng.IntN(30) {
			pos := g.step(ctx)
			if last.Before(pos) {
				last = pos
			}
			if !pos.IsZero() && rng.IntN(4) == 0 {
				e.waitAll(pos)
			}
		}
		if rng.IntN(2) == 0 {
			e.waitAll(e.head())
		}
		stop()
	}
	// The last write's position, not the head: the head is gated behind
	// the oldest open transaction on the shared server, so it may lag
	// behind what this test wrote, and the rebuild would then apply more
	// than the live workers were waited for. Commands ran one after the
	// other, so the last one's events come last in the log.
	head := last
	if head.IsZero() {
		head = e.head()
	}
	stop := e.runWorkers(projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond, BatchSize: 1 + rng.IntN(8)})
	e.waitAll(head)
	stop()
	t.Logf("%d commands, %d written, log at %s", g.commands, g.written, head)

	var alias string
	if e.search {
		alias = e.app.OrderSearch().Alias
	}
	live := e.readModels(e.app.Pool, e.app.Schema, alias)
	fresh := e.rebuildFromScratch(head)
	for _, name := range slices.Sorted(maps.Keys(live)) {
		compareRows(t, name, live[name], fresh[name])
	}
	if len(live[readmodel.OrderViewName]) == 0 {
		t.Fatalf("seed %d: order_view is empty; the test built nothing to compare", seed)
	}

	// What an operator runs says the same: no drift.
	for _, p := range app.Projections() {
		d, err := e.app.Sink.Verify(ctx, e.app.Store, e.app.Registry, p, pgsink.VerifyConfig{Worker: projections.Config{Logger: quiet}})
		if err != nil {
			t.Fatalf("verify %s: %v", p.Name(), err)
		}
		if !d.Equal() {
			t.Errorf("verify %s: %d differences: %+v", p.Name(), d.Differences(), d)
		}
	}
	if e.search {
		d, err := e.app.Elastic.Verify(ctx, e.app.Store, e.app.Registry, e.app.OrderSearch(), elasticsink.VerifyConfig{Worker: projections.Config{Logger: quiet}})
		if err != nil {
			t.Fatalf("verify order_search: %v", err)
		}
		if !d.Equal() {
			t.Errorf("verify order_search: %d differences: %+v", d.Differences(), d)
		}
	}
}

// generator makes random commands on a few products and orders.
type generator struct {
	t                 *testing.T
	e                 *env
	rng               *rand.Rand
	products, orderID []string
	commands, written int
}

func (g *generator) pick(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return ids[g.rng.IntN(len(ids))]
}

func (g *generator) createProduct(ctx context.Context) es.Position {
	id := fmt.Sprintf("p%d", len(g.products)+1)
	g.products = append(g.products, id)
	return g.dispatch(ctx, orders.CreateProduct{ProductID: id, Name: "Product " + id, PriceCents: int64(100 + g.rng.IntN(900))})
}

// step dispatches one random command and returns the position it wrote, or
// the zero position when the order's state refused it or it changed
// nothing.
func (g *generator) step(ctx context.Context) es.Position {
	order := g.pick(g.orderID)
	switch n := g.rng.IntN(100); {
	case n < 5:
		return g.createProduct(ctx)
	case n < 15:
		return g.dispatch(ctx, orders.RenameProduct{ProductID: g.pick(g.products), Name: fmt.Sprintf("Name %d", g.rng.IntN(1000))})
	case n < 20:
		return g.dispatch(ctx, orders.RepriceProduct{ProductID: g.pick(g.products), PriceCents: int64(100 + g.rng.IntN(900))})
	case n < 40 || len(g.orderID) == 0:
		id := fmt.Sprintf("o%d", len(g.orderID)+1)
		g.orderID = append(g.orderID, id)
		cmd := orders.PlaceOrder{OrderID: id, CustomerID: "c" + id, CustomerName: "Customer " + id}
		for _, i := range g.rng.Perm(len(g.products))[:1+g.rng.IntN(min(3, len(g.products)))] {
			cmd.Lines = append(cmd.Lines, orders.LineRequest{ProductID: g.products[i], Quantity: 1 + g.rng.IntN(5)})
		}
		return g.dispatch(ctx, cmd)
	case n < 65:
		return g.dispatch(ctx, orders.AddItem{OrderID: order, ProductID: g.pick(g.products), Quantity: 1 + g.rng.IntN(5)})
	case n < 78:
		return g.dispatch(ctx, orders.RemoveItem{OrderID: order, ProductID: g.pick(g.products)})
	case n < 86:
		return g.dispatch(ctx, orders.ConfirmOrder{OrderID: order})
	case n < 92:
		root, err := g.e.app.Repos.Orders.Load(ctx, order)
		if err != nil {
			g.t.Fatalf("load order %s: %v", order, err)
		}
		return g.dispatch(ctx, orders.PayOrder{OrderID: order, AmountCents: root.State.Total()})
	case n < 96:
		return g.dispatch(ctx, orders.ShipOrder{OrderID: order})
	default:
		return g.dispatch(ctx, orders.CancelOrder{OrderID: order, Reason: "random"})
	}
}

func (g *generator) dispatch(ctx context.Context, cmd any) es.Position {
	g.t.Helper()
	g.commands++
	res, err := g.e.app.Bus.Dispatch(ctx, cmd)
	switch {
	case err == nil:
		if !res.Position.IsZero() {
			g.written++
		}
		return res.Position
	case orders.IsConflict(err) || orders.IsBadInput(err):
		return es.Position{}
	}
	g.t.Fatalf("%T %+v: %v", cmd, cmd, err)
	return es.Position{}
}

// runWorkers runs a worker of every projection of the app with cfg until
// the returned function is called.
func (e *env) runWorkers(cfg projections.Config) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				e.t.Errorf("worker of %s: %v", name, err)
			}
		})
	}
	for _, p := range app.Projections() {
		w := pgsink.NewWorker(e.app.Store, e.app.Registry, e.app.Sink, p, cfg)
		run(p.Name(), w.Run)
	}
	if e.app.Elastic != nil {
		w := elasticsink.NewWorker(e.app.Store, e.app.Registry, e.app.Elastic, e.app.OrderSearch(), cfg)
		run(readmodel.OrderSearchName, w.Run)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	e.t.Cleanup(stop)
	return stop
}

// waitAll waits until every projection has reached pos.
func (e *env) waitAll(pos es.Position) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	for _, name := range e.app.ProjectionNames() {
		if err := projections.WaitFor(ctx, e.app.Sink, name, pos); err != nil {
			e.t.Fatalf("waiting for %s to reach %s: %v", name, pos, err)
		}
	}
}

// readModels returns the rows of order_view and orders_by_product in
// schema, and the documents of the order_search index behind alias (unless
// alias is ""), each as a map from its key to its JSON.
func (e *env) readModels(pool *pgxpool.Pool, schema, alias string) map[string]map[string]string {
	e.t.Helper()
	ctx := e.t.Context()
	out := map[string]map[string]string{}
	for name, key := range map[string]string{
		readmodel.OrderViewName:       "t.order_id",
		readmodel.OrdersByProductName: "t.product_id || '/' || t.order_id",
	} {
		rows, err := pool.Query(ctx, `SELECT `+key+`, to_jsonb(t)::text FROM `+pgx.Identifier{schema, name}.Sanitize()+` t`)
		if err != nil {
			e.t.Fatalf("read %s: %v", name, err)
		}
		m := map[string]string{}
		var k, v string
		if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error { m[k] = v; return nil }); err != nil {
			e.t.Fatalf("read %s: %v", name, err)
		}
		out[name] = m
	}
	if alias == "" {
		return out
	}
	search := &readmodel.Search{Client: e.app.Search.Client, Alias: alias}
	if err := search.Refresh(ctx); err != nil {
		e.t.Fatal(err)
	}
	res, err := elasticsink.Search[readmodel.SearchDoc](ctx, search.Client, alias,
		map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 10_000})
	if err != nil {
		e.t.Fatalf("read %s: %v", alias, err)
	}
	m := map[string]string{}
	for _, h := range res.Hits {
		b, err := json.Marshal(h.Source)
		if err != nil {
			e.t.Fatal(err)
		}
		m[h.Source.OrderID] = string(b)
	}
	out[readmodel.OrderSearchName] = m
	return out
}

// rebuildFromScratch runs every projection of the app from the start of
// the log to head into a schema and an index of their own, and returns
// their read models.
func (e *env) rebuildFromScratch(head es.Position) map[string]map[string]string {
	e.t.Helper()
	ctx := e.t.Context()
	pool, schema := pgtest.NewSchemaWith(e.t, pgtest.SchemaConfig{MaxConns: 8})
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := sink.Migrate(ctx); err != nil {
		e.t.Fatal(err)
	}
	cfg := projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond}
	for _, p := range app.Projections() {
		if err := sink.BeginFunc(ctx, p.Setup); err != nil {
			e.t.Fatalf("set up %s: %v", p.Name(), err)
		}
		w := pgsink.NewWorker(e.app.Store, e.app.Registry, sink, p, cfg)
		if err := w.RunUntil(ctx, sink, head, time.Second, nil); err != nil {
			e.t.Fatalf("rebuild %s: %v", p.Name(), err)
		}
	}
	var alias string
	if e.app.Elastic != nil {
		alias = elastictest.Name(e.t)
		p := readmodel.OrderSearch{Alias: alias}
		es := elasticsink.New(e.app.Search.Client, sink, elasticsink.Config{Logger: quiet})
		if _, err := es.EnsureIndex(ctx, p); err != nil {
			e.t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.SetupState(ctx, tx, schema) }); err != nil {
			e.t.Fatal(err)
		}
		w := elasticsink.NewWorker(e.app.Store, e.app.Registry, es, p, cfg)
		if err := w.RunUntil(ctx, sink, head, time.Second, nil); err != nil {
			e.t.Fatalf("rebuild %s: %v", p.Name(), err)
		}
	}
	return e.readModels(pool, schema, alias)
}

// compareRows reports every key whose row differs between the live read
// model and its rebuild.
func compareRows(t *testing.T, name string, live, rebuilt map[string]string) {
	t.Helper()
	n := 0
	for _, k := range slices.Sorted(maps.Keys(live)) {
		want, ok := rebuilt[k]
		switch {
		case !ok:
			t.Errorf("%s %s: live only: %s", name, k, live[k])
		case live[k] != want:
			t.Errorf("%s %s differs from its rebuild:\n live:    %s\n rebuilt: %s", name, k, live[k], want)
		default:
			continue
		}
		if n++; n == 10 {
			t.Errorf("%s: more differences left out", name)
			return
		}
	}
	for _, k := range slices.Sorted(maps.Keys(rebuilt)) {
		if _, ok := live[k]; !ok {
			t.Errorf("%s %s: rebuilt only: %s", name, k, rebuilt[k])
		}
	}
}
