package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
)

func loadCommand() *cobra.Command {
	var (
		n, products, concurrency int
		via, url, prefix         string
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Write N orders through the write API or directly through the command bus",
		Long: `Write N orders, each of one to three lines of random products, with the given
concurrency: through the HTTP write API of a running server (--via http, the
default; --url), or directly through the command bus on the database
(--via bus; --database-url or ` + cli.EnvDatabaseURL + `). The products
are created first if they do not exist.`,
		Example: `  orders load --orders 10000 --url http://127.0.0.1:8080
  orders load --orders 100000 --via bus --concurrency 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var send func(ctx context.Context, cmd any, path, body string) error
			switch via {
			case "http":
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
				send = func(ctx context.Context, _ any, path, body string) error {
					return post(ctx, client, strings.TrimSuffix(url, "/")+path, body)
				}
			case "bus":
				s, err := cli.ReadSettings(cmd)
				if err != nil {
					return err
				}
				if s.DatabaseURL == "" {
					return fmt.Errorf("no database: set --database-url or %s", cli.EnvDatabaseURL)
				}
				pool, err := app.NewPool(ctx, s.DatabaseURL, 0)
				if err != nil {
					return err
				}
				defer pool.Close()
				a, err := app.New(ctx, app.Config{Pool: pool, Schema: s.Schema, Logger: logger()})
				if err != nil {
					return err
				}
				send = func(ctx context.Context, c any, _, _ string) error {
					_, err := a.Bus.Dispatch(ctx, c)
					return err
				}
			default:
				return fmt.Errorf("--via is %q; want http or bus", via)
			}
			start := time.Now()
			written, err := generate(ctx, send, prefix, n, products, concurrency)
			el := time.Since(start)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d orders via %s in %s: %.0f orders/s\n", written, via, el.Round(time.Millisecond), float64(written)/el.Seconds())
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&n, "orders", 1000, "how many orders to write")
	f.IntVar(&products, "products", 100, "how many products to order from")
	f.IntVar(&concurrency, "concurrency", 8, "how many commands in flight")
	f.StringVar(&via, "via", "http", "http (the write API at --url) or bus (the command bus on the database)")
	f.StringVar(&url, "url", "http://127.0.0.1:8080", "the write API's base URL, for --via http")
	f.StringVar(&prefix, "prefix", fmt.Sprintf("load-%d", time.Now().Unix()), "prefix of the order IDs")
	return cmd
}

func post(ctx context.Context, client *http.Client, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %d %s", url, res.StatusCode, b)
	}
	return nil
}

// generate creates the products (ignoring those that exist) and writes n
// orders with the given concurrency.
func generate(ctx context.Context, send func(ctx context.Context, cmd any, path, body string) error, prefix string, n, products, concurrency int) (int64, error) {
	for i := range products {
		id := fmt.Sprintf("load-p%d", i)
		price := int64(100 + i*37%5000)
		err := send(ctx, orders.CreateProduct{ProductID: id, Name: fmt.Sprintf("Product %d", i), PriceCents: price},
			"/products", fmt.Sprintf(`{"product_id":%q,"name":"Product %d","price_cents":%d}`, id, i, price))
		if err != nil && !errors.Is(err, cqrs.ErrAggregateExists) && !strings.Contains(err.Error(), "already_exists") {
			return 0, err
		}
	}
	var (
		next, written atomic.Int64
		wg            sync.WaitGroup
		errOnce       sync.Once
		firstErr      error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				c := orders.PlaceOrder{OrderID: fmt.Sprintf("%s-%d", prefix, i), CustomerID: fmt.Sprintf("c%d", i%5000),
					CustomerName: customerName(int(i))}
				var lines []string
				for _, p := range rand.Perm(products)[:1+rand.IntN(min(3, products))] {
					q := 1 + rand.IntN(4)
					c.Lines = append(c.Lines, orders.LineRequest{ProductID: fmt.Sprintf("load-p%d", p), Quantity: q})
					lines = append(lines, fmt.Sprintf(`{"product_id":"load-p%d","quantity":%d}`, p, q))
				}
				body := fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"customer_name":%q,"lines":[%s]}`,
					c.OrderID, c.CustomerID, c.CustomerName, strings.Join(lines, ","))
				if err := send(ctx, c, "/orders", body); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				written.Add(1)
			}
		})
	}
	wg.Wait()
	return written.Load(), firstErr
}

var firstNames = []string{"Ann", "Bob", "Chloé", "Dan", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemal", "Lena"}
var lastNames = []string{"Smith", "Jones", "Martin", "García", "Okafor", "Tanaka", "Novak", "Rossi", "Berg", "Silva"}

func customerName(i int) string {
	return firstNames[i%len(firstNames)] + " " + lastNames[(i/len(firstNames))%len(lastNames)]
}
