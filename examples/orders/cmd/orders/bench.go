package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
)

func benchCommand() *cobra.Command {
	var (
		n, products, concurrency, conns int
		duration                        time.Duration
		profiles                        string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the read API against N orders, and a raw pgx SELECT by primary key for comparison",
		Long: `Seed N orders (pgstore Import, then the projections catch up from the log),
serve the API in this process and measure GET /orders/{id} and
GET /products/{id}/orders with a closed-loop load generator of --concurrency
clients, then a raw pgx SELECT of the order_view row by primary key at the same
concurrency. Uses a throwaway PostgreSQL server unless --database-url or
` + cli.EnvDatabaseURL + ` is set (then the schema named by --schema, default
orders_bench, must be empty or hold an earlier seed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			s, err := cli.ReadSettings(cmd)
			if err != nil {
				return err
			}
			dbURL := s.DatabaseURL
			if dbURL == "" {
				srv, err := pgtest.Start(ctx, pgtest.ServerConfig{})
				if err != nil {
					return err
				}
				defer srv.Stop()
				dbURL = srv.URL()
			}
			pcfg, err := pgxpool.ParseConfig(dbURL)
			if err != nil {
				return err
			}
			pcfg.MaxConns = int32(conns)
			pool, err := pgxpool.NewWithConfig(ctx, pcfg)
			if err != nil {
				return err
			}
			defer pool.Close()
			schema := "orders_bench"
			if f := cmd.Root().PersistentFlags().Lookup("schema"); f != nil && f.Changed {
				schema = f.Value.String()
			}
			a, err := app.New(ctx, app.Config{Pool: pool, Schema: schema, Logger: logger(),
				Worker: projections.Config{Logger: logger(), BatchSize: 2000}})
			if err != nil {
				return err
			}
			head, err := a.Store.Head(ctx)
			if err != nil {
				return err
			}
			if head.IsZero() {
				t0 := time.Now()
				res, err := seed(ctx, a.Store, n, products)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "seeded %d events (%d orders, %d products) with pgstore Import in %s\n", res.Events, n, products, time.Since(t0).Round(time.Millisecond))
				head = res.Position
			}

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- serve(sctx, a, ln) }()
			t0 := time.Now()
			for _, name := range a.ProjectionNames() {
				if err := projections.WaitFor(ctx, a.Sink, name, head); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "projections caught up with %s in %s\n", head, time.Since(t0).Round(time.Millisecond))

			base := "http://" + ln.Addr().String()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}
			get := func(path string) func(context.Context) error {
				return func(ctx context.Context) error {
					req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
					if err != nil {
						return err
					}
					res, err := client.Do(req)
					if err != nil {
						return err
					}
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						return fmt.Errorf("GET %s: %s", path, res.Status)
					}
					return err
				}
			}
			orderID := func() string { return fmt.Sprintf("bench-%d", rand.IntN(n)) }
			sql := `SELECT order_id, customer_id, customer_name, status, total_cents, item_count, lines, placed_at, updated_at, version FROM ` +
				pgx.Identifier{schema, readmodel.OrderViewName}.Sanitize() + ` WHERE order_id = $1`

			fmt.Fprintf(out, "\n%d orders, %d clients, %s each, GOMAXPROCS %d, pool of %d connections\n\n", n, concurrency, duration, runtime.GOMAXPROCS(0), conns)
			fmt.Fprintln(out, "| what | requests/s | p50 | p99 | errors |")
			fmt.Fprintln(out, "|---|---:|---:|---:|---:|")
			var rows []result
			for i, c := range []struct {
				name string
				op   func(context.Context) error
			}{
				{"GET /orders/{id}", func(ctx context.Context) error { return get("/orders/" + orderID())(ctx) }},
				{"GET /products/{id}/orders (20 per page)", func(ctx context.Context) error {
					return get(fmt.Sprintf("/products/bp%d/orders", rand.IntN(products)))(ctx)
				}},
				{"raw pgx SELECT by primary key (scan + JSON decode of lines)", func(ctx context.Context) error {
					var v readmodel.OrderView
					var lines []byte
					err := pool.QueryRow(ctx, sql, orderID()).Scan(&v.OrderID, &v.CustomerID, &v.CustomerName, &v.Status,
						&v.TotalCents, &v.ItemCount, &lines, &v.PlacedAt, &v.UpdatedAt, &v.Version)
					if err == nil {
						err = json.Unmarshal(lines, &v.Lines)
					}
					return err
				}},
			} {
				stop, err := startProfile(profiles, i)
				if err != nil {
					return err
				}
				r := measure(ctx, c.op, concurrency, duration)
				if err := stop(); err != nil {
					return err
				}
				r.name = c.name
				rows = append(rows, r)
				fmt.Fprintf(out, "| %s | %.0f | %s | %s | %d |\n", r.name, r.rate, r.p50, r.p99, r.errors)
				if r.firstErr != nil {
					fmt.Fprintf(out, "  first error: %v\n", r.firstErr)
				}
			}
			fmt.Fprintf(out, "\nGET /orders/{id} / raw pgx: %.2f\n", rows[0].rate/rows[2].rate)
			cancel()
			return <-done
		},
	}
	f := cmd.Flags()
	f.IntVar(&n, "orders", 100_000, "how many orders to seed")
	f.IntVar(&products, "products", 1000, "how many products to seed")
	f.IntVar(&concurrency, "concurrency", 32, "concurrent clients")
	f.IntVar(&conns, "conns", 16, "PostgreSQL connections of the pool")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to measure each case")
	f.StringVar(&profiles, "cpuprofile", "", "write a CPU profile of each case (load generator and server, this process) to DIR/case-N.prof")
	return cmd
}

// startProfile starts a CPU profile of case i into dir, when dir is set;
// stop ends it.
func startProfile(dir string, i int) (stop func() error, err error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("case-%d.prof", i)))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// seed imports products bp0.. and orders bench-0.. straight into the log,
// placed over the last 90 days.
func seed(ctx context.Context, store *pgstore.Store, n, products int) (pgstore.ImportResult, error) {
	events := func(yield func(pgstore.ImportEvent, error) bool) {
		reg := orders.NewRegistry()
		emit := func(stream string, e any, at time.Time) bool {
			d, err := reg.Encode(e, nil)
			return yield(pgstore.ImportEvent{Stream: stream, Event: d, RecordedAt: at}, err)
		}
		start := time.Now().Add(-90 * 24 * time.Hour)
		for i := range products {
			if !emit(fmt.Sprintf("product-bp%d", i), orders.ProductCreated{ProductID: fmt.Sprintf("bp%d", i),
				Name: fmt.Sprintf("Product %d", i), PriceCents: int64(100 + i*37%5000)}, start) {
				return
			}
		}
		r := rand.New(rand.NewPCG(1, 2))
		for i := range n {
			id := fmt.Sprintf("bench-%d", i)
			e := orders.OrderPlaced{OrderID: id, CustomerID: fmt.Sprintf("c%d", i%5000), CustomerName: customerName(i)}
			for _, p := range r.Perm(products)[:1+r.IntN(3)] {
				e.Lines = append(e.Lines, orders.Line{ProductID: fmt.Sprintf("bp%d", p), Quantity: 1 + r.IntN(4), UnitPriceCents: int64(100 + p*37%5000)})
			}
			at := start.Add(time.Duration(i) * 90 * 24 * time.Hour / time.Duration(n))
			if !emit("order-"+id, e, at) {
				return
			}
		}
	}
	return store.Import(ctx, iter.Seq2[pgstore.ImportEvent, error](events))
}

type result struct {
	name     string
	rate     float64
	p50, p99 time.Duration
	errors   int
	firstErr error
}

// measure runs op from c goroutines in a closed loop for d, after a warm-up
// of a second.
func measure(ctx context.Context, op func(context.Context) error, c int, d time.Duration) result {
	run := func(d time.Duration, record bool) ([]time.Duration, int, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var (
			mu       sync.Mutex
			all      []time.Duration
			errs     int
			firstErr error
			wg       sync.WaitGroup
		)
		for range c {
			wg.Go(func() {
				lat := make([]time.Duration, 0, 1<<16)
				e := 0
				var fe error
				for ctx.Err() == nil {
					t := time.Now()
					err := op(ctx)
					if ctx.Err() != nil {
						break
					}
					if err != nil {
						e++
						if fe == nil {
							fe = err
						}
						continue
					}
					lat = append(lat, time.Since(t))
				}
				mu.Lock()
				all, errs = append(all, lat...), errs+e
				if firstErr == nil {
					firstErr = fe
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		return all, errs, firstErr
	}
	_, _, _ = run(time.Second, false) // warm-up
	lat, errs, firstErr := run(d, true)
	slices.Sort(lat)
	r := result{errors: errs, firstErr: firstErr, rate: float64(len(lat)) / d.Seconds()}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	r.p50, r.p99 = r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond)
	return r
}
