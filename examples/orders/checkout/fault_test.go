package checkout_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/internal/childproc"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// envWorkerSchema, when set, makes the test binary a worker process on
// that schema: it runs the checkout and the gateway until it is killed.
const envWorkerSchema = "CHECKOUT_TEST_WORKER_SCHEMA"

// The fault test's timing: a slow card answers after the deadline, when
// the payment is void.
var faultConfig = checkout.Config{PaymentTimeout: 5 * time.Second, SlowAnswer: 8 * time.Second}

type world struct {
	store *pgstore.Store
	sink  *pgsink.Sink
	reg   *es.Registry
	bus   *cqrs.Bus
}

func openWorld(ctx context.Context, pool *pgxpool.Pool, schema string) world {
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	reg := orders.NewRegistry()
	bus := cqrs.NewBus()
	orders.Register(bus, orders.NewRepositories(store, reg))
	return world{store: store, sink: sink, reg: reg, bus: bus}
}

func (w world) migrate(ctx context.Context) error {
	if _, err := w.store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := w.sink.Migrate(ctx); err != nil {
		return err
	}
	return pgprocess.Migrate(ctx, w.sink)
}

// runWorker is a worker process: the checkout's and the gateway's runners
// on the schema of envWorkerSchema. It dies now and then right after a
// command was applied and before its outbox row is marked dispatched: the
// crash that would apply a command twice if its ID were not derived.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := pgxpool.ParseConfig(os.Getenv(pgtest.EnvURL))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	w := openWorld(ctx, pool, os.Getenv(envWorkerSchema))
	if os.Getenv("CHECKOUT_TEST_WORKER_DIES") == "1" {
		w.bus.Use(func(next cqrs.Next) cqrs.Next {
			return func(ctx context.Context, cmd any) (cqrs.Result, error) {
				res, err := next(ctx, cmd)
				if err == nil && rand.IntN(400) == 0 {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				return res, err
			}
		})
	}
	rc := pgprocess.Config{Dispatchers: 3, PollInterval: 100 * time.Millisecond, Logger: quiet,
		RetryMin: 20 * time.Millisecond, RetryMax: time.Second, Worker: projections.Config{PollInterval: 50 * time.Millisecond}}
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range checkout.Runners(w.store, w.reg, w.sink, w.bus, faultConfig, rc) {
		g.Go(func() error { return r.Run(ctx) })
	}
	fmt.Printf(childproc.ReadyPrefix+"as pid %d\n", os.Getpid())
	if err := g.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startWorker starts a worker process and waits until it runs.
func startWorker(schema string, dies bool) (*exec.Cmd, error) {
	env := []string{envWorkerSchema + "=" + schema}
	if dies {
		env = append(env, "CHECKOUT_TEST_WORKER_DIES=1")
	}
	return childproc.Start("a worker process", env...)
}

// TestCheckoutSurvivesKilledWorkers is the fault test of the checkout: a
// few thousand orders check out with random cards (ok, declined, too
// slow) and products that run out, while two worker processes compete and
// are killed with SIGKILL many times from outside, and die on their own
// right after applying a command. Then one worker drains, and every
// invariant is checked on the event log and the process tables.
func TestCheckoutSurvivesKilledWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	t.Parallel()
	n := 2000
	if v := os.Getenv("CHECKOUT_FAULT_ORDERS"); v != "" {
		fmt.Sscan(v, &n)
	}
	const (
		// Enough products that no inventory stream gets long (each
		// reservation loads its stream), ten of which run out.
		products = 100
		kills    = 30
	)
	t0 := time.Now()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.SchemaConfig{MaxConns: 16})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	w := openWorld(ctx, pool, schema)
	if err := w.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("orders %d, seed %d", n, seed)
	stock := map[string]int{}
	for i := range products {
		id := fmt.Sprintf("p%d", i)
		stock[id] = 100_000
		if i < 10 {
			stock[id] = n / 50 // runs out
		}
		dispatch(t, ctx, w.bus, orders.CreateProduct{ProductID: id, Name: "Product " + id, PriceCents: int64(100 + i)})
		dispatch(t, ctx, w.bus, orders.SetStock{ProductID: id, Level: stock[id]})
	}
	work := make([]orders.PlaceOrder, n)
	cards := make([]string, n)
	for i := range n {
		o := orders.PlaceOrder{OrderID: fmt.Sprintf("o%d", i), CustomerID: "c", CustomerName: "C"}
		for _, p := range rng.Perm(products)[:1+rng.IntN(3)] {
			o.Lines = append(o.Lines, orders.LineRequest{ProductID: fmt.Sprintf("p%d", p), Quantity: 1 + rng.IntN(3)})
		}
		work[i] = o
		switch r := rng.IntN(10); {
		case r < 6:
			cards[i] = orders.CardOK
		case r < 8:
			cards[i] = orders.CardDecline
		default:
			cards[i] = orders.CardSlow
		}
	}

	// Two competing workers, restarted when they die.
	slotCtx, stopSlots := context.WithCancel(ctx)
	slots := []*childproc.Slot{{}, {}}
	started := make(chan error, 1000)
	var running sync.WaitGroup
	for _, s := range slots {
		running.Go(func() { s.Run(slotCtx, func() (*exec.Cmd, error) { return startWorker(schema, true) }, started) })
	}
	stopAll := sync.OnceFunc(func() {
		stopSlots()
		for _, s := range slots {
			s.Kill()
		}
		running.Wait()
	})
	t.Cleanup(stopAll)
	for range slots {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}

	// Count the log's events as they come, to kill while events flow.
	seen := make(chan int, 1)
	counted := make(chan struct{})
	countCtx, stopCount := context.WithCancel(ctx)
	go func() {
		defer close(counted)
		total := 0
		for recs, err := range w.store.Subscribe(countCtx, es.SubscribeOptions{}) {
			if err != nil {
				return
			}
			total += len(recs)
			select {
			case <-seen:
			default:
			}
			seen <- total
		}
	}()
	t.Cleanup(func() { stopCount(); <-counted })

	// Place and check out the orders, four at a time.
	placing := make(chan error, 1)
	go func() {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for i := range n {
			g.Go(func() error {
				if _, err := w.bus.Dispatch(gctx, work[i]); err != nil {
					return fmt.Errorf("place %s: %w", work[i].OrderID, err)
				}
				if _, err := w.bus.Dispatch(gctx, orders.CheckoutOrder{OrderID: work[i].OrderID, Card: cards[i]}); err != nil {
					return fmt.Errorf("check out %s: %w", work[i].OrderID, err)
				}
				return nil
			})
		}
		placing <- g.Wait()
	}()

	// Kill a worker every so many events, alternating.
	every := max(n*6/kills, 20)
	last := 0
	for k := range kills {
		for cur := last; cur < last+every; {
			select {
			case cur = <-seen:
			case <-ctx.Done():
				t.Fatalf("kill %d: the log did not grow past %d events", k, last)
			}
		}
		last += every
		slots[k%2].Kill()
	}
	if err := <-placing; err != nil {
		t.Fatal(err)
	}
	tPlaced := time.Since(t0)

	// One worker drains what is left.
	stopAll()
	starts := 0
	for len(started) > 0 {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		starts++
	}
	drain, err := startWorker(schema, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drain.Process.Signal(syscall.SIGKILL); _ = drain.Wait() })
	waitForEnds(t, ctx, w.store, n)
	waitQuiet(t, ctx, w.sink)
	t.Logf("%d orders placed in %s, drained in %s; worker processes started: %d, for %d kills from outside",
		n, tPlaced.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), starts, kills)

	checkInvariants(t, ctx, w, pool, schema, n, stock, work)
}

func dispatch(t *testing.T, ctx context.Context, bus *cqrs.Bus, cmd any) {
	t.Helper()
	if _, err := bus.Dispatch(ctx, cmd); err != nil {
		t.Fatalf("dispatch %T: %v", cmd, err)
	}
}

// waitForEnds waits, on the log, for n orders to be confirmed or
// cancelled.
func waitForEnds(t *testing.T, ctx context.Context, store es.Store, n int) {
	t.Helper()
	ended := map[string]bool{}
	for recs, err := range store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("wait for %d orders to end (%d did): %v", n, len(ended), err)
		}
		for _, rec := range recs {
			if strings.HasPrefix(rec.Stream, orders.OrderStreamPrefix) && (rec.Type == orders.TypeOrderConfirmed || rec.Type == orders.TypeOrderCancelled) {
				ended[rec.Stream] = true
			}
		}
		if len(ended) >= n {
			return
		}
	}
	t.Fatalf("%d of %d orders ended", len(ended), n)
}

// waitQuiet waits until both process managers have nothing running,
// pending or due: the slow cards' late captures came and were refused.
// The tables give no signal, so it polls them.
func waitQuiet(t *testing.T, ctx context.Context, sink *pgsink.Sink) {
	t.Helper()
	for {
		quiet := true
		for _, name := range []string{checkout.Name, checkout.GatewayName} {
			st, err := pgprocess.ReadStats(ctx, sink, name)
			if err != nil {
				t.Fatalf("wait for the processes to end: %v", err)
			}
			if st.Running != 0 || st.PendingCommands != 0 || st.PendingDeadlines != 0 {
				quiet = false
			}
		}
		if quiet {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the processes did not end")
		case <-time.After(100 * time.Millisecond): // polling rows, which have no signal
		}
	}
}

type reservation struct{ product, order string }

func checkInvariants(t *testing.T, ctx context.Context, w world, pool *pgxpool.Pool, schema string, n int,
	stock map[string]int, work []orders.PlaceOrder) {
	t.Helper()
	var (
		ended     = map[string][]string{} // order → its terminal events
		captured  = map[string]int{}
		reserved  = map[reservation]int{} // quantity
		reserves  = map[reservation]int{} // how many StockReserved
		releases  = map[reservation]int{}
		applied   = map[string]int{} // command ID + event type → events
		checkouts = map[string]int{}
		total     int
	)
	for after := (es.Position{}); ; {
		recs, err := w.store.ReadAll(ctx, after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].Position
		for _, rec := range recs {
			total++
			if c := rec.Metadata[es.MetaCausationID]; strings.Contains(c, "/") {
				applied[c+" "+rec.Type]++
			}
			ev, err := w.reg.Decode(rec)
			if err != nil {
				t.Fatal(err)
			}
			switch e := ev.(type) {
			case orders.OrderConfirmed:
				ended[e.OrderID] = append(ended[e.OrderID], "confirmed")
			case orders.OrderCancelled:
				ended[e.OrderID] = append(ended[e.OrderID], "cancelled")
			case orders.OrderCheckoutStarted:
				checkouts[e.OrderID]++
			case orders.PaymentCaptured:
				captured[e.OrderID]++
			case orders.StockReserved:
				r := reservation{e.ProductID, e.OrderID}
				reserves[r]++
				reserved[r] += e.Quantity
			case orders.StockReleased:
				r := reservation{e.ProductID, e.OrderID}
				releases[r]++
				reserved[r] -= e.Quantity
			}
		}
	}
	outcomes := map[string]int{}
	want := map[string]int{} // product → units of confirmed orders
	for _, o := range work {
		got := ended[o.OrderID]
		if len(got) != 1 || checkouts[o.OrderID] != 1 {
			t.Errorf("order %s: ended %v after %d checkouts; want confirmed or cancelled once, after one", o.OrderID, got, checkouts[o.OrderID])
			continue
		}
		outcomes[got[0]]++
		confirmed := got[0] == "confirmed"
		if (confirmed && captured[o.OrderID] != 1) || (!confirmed && captured[o.OrderID] != 0) {
			t.Errorf("order %s: %s with %d payments captured; want 1 if confirmed, 0 if cancelled", o.OrderID, got[0], captured[o.OrderID])
		}
		for _, l := range o.Lines {
			r := reservation{l.ProductID, o.OrderID}
			held := reserved[r]
			if confirmed {
				want[l.ProductID] += l.Quantity
				if held != l.Quantity {
					t.Errorf("confirmed order %s: holds %d of %s; want %d", o.OrderID, held, l.ProductID, l.Quantity)
				}
			} else if held != 0 {
				t.Errorf("cancelled order %s: holds %d of %s; want 0", o.OrderID, held, l.ProductID)
			}
			if reserves[r] > 1 || releases[r] > 1 {
				t.Errorf("order %s, product %s: reserved %d times, released %d times; want at most once each", o.OrderID, l.ProductID, reserves[r], releases[r])
			}
		}
	}
	for p, level := range stock {
		inv, err := orders.NewRepositories(w.store, w.reg).Inventory.Load(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if inv.State.Reserved != want[p] || inv.State.Reserved > level {
			t.Errorf("product %s: %d reserved; want %d (confirmed orders), at most the level %d", p, inv.State.Reserved, want[p], level)
		}
	}
	for k, c := range applied {
		if c > 1 {
			t.Errorf("command %s applied %d times", k, c)
		}
	}
	for _, name := range []string{checkout.Name, checkout.GatewayName} {
		st, err := pgprocess.ReadStats(ctx, w.sink, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Failed != 0 || st.Running != 0 || st.Stuck != 0 || (name == checkout.Name && st.Completed != int64(n)) {
			t.Errorf("%s: %d completed, %d running, %d failed, %d stuck; want all completed", name, st.Completed, st.Running, st.Failed, st.Stuck)
		}
	}
	// Deadlines fired at most once, never after being cancelled, and each
	// fired payment deadline voided its payment.
	q := func(sql string, args ...any) pgx.Row {
		return pool.QueryRow(ctx, strings.ReplaceAll(sql, "{{s}}", pgx.Identifier{schema}.Sanitize()), args...)
	}
	var twice, both, firedNoVoid, voidNoFire, fired int
	if err := q(`SELECT
		(SELECT count(*) FROM (SELECT 1 FROM {{s}}.process_deadlines WHERE status = 'fired' GROUP BY process, id, name HAVING count(*) > 1) x),
		(SELECT count(*) FROM (SELECT 1 FROM {{s}}.process_deadlines GROUP BY process, id, name
			HAVING count(*) FILTER (WHERE status = 'fired') > 0 AND count(*) FILTER (WHERE status = 'cancelled') > 0) x),
		(SELECT count(*) FROM {{s}}.process_deadlines d WHERE d.process = $1 AND d.status = 'fired' AND NOT EXISTS (
			SELECT 1 FROM {{s}}.process_outbox o WHERE o.process = d.process AND o.id = d.id AND o.command_type = $2)),
		(SELECT count(*) FROM {{s}}.process_outbox o WHERE o.process = $1 AND o.command_type = $2 AND NOT EXISTS (
			SELECT 1 FROM {{s}}.process_deadlines d WHERE d.process = o.process AND d.id = o.id AND d.status = 'fired')),
		(SELECT count(*) FROM {{s}}.process_deadlines WHERE process = $1 AND status = 'fired')`,
		checkout.Name, cqrs.CommandName(orders.VoidPayment{})).Scan(&twice, &both, &firedNoVoid, &voidNoFire, &fired); err != nil {
		t.Fatal(err)
	}
	if twice != 0 || both != 0 || firedNoVoid != 0 || voidNoFire != 0 {
		t.Errorf("deadlines: %d fired twice, %d fired and cancelled, %d fired without a void, %d voids without a fired deadline; want 0 each",
			twice, both, firedNoVoid, voidNoFire)
	}
	var won int // captures that beat the void of a fired deadline
	if err := q(`SELECT count(*) FROM {{s}}.process_instances i JOIN {{s}}.process_deadlines d
		ON d.process = i.process AND d.id = i.id AND d.status = 'fired'
		WHERE i.process = $1 AND i.state->>'status' = $2`, checkout.Name, checkout.StatusConfirmed).Scan(&won); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events; orders %v; payment deadlines fired %d, of which the capture beat the void %d times", total, outcomes, fired, won)
}
