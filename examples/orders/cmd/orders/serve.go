package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/checkout"
)

func serveCommand() *cobra.Command {
	var (
		addr, metricsAddr string
		dbMaxConns        int32
		paymentTimeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the write and read APIs and run the projection workers and the checkout",
		Long: `Serve the write and read APIs and run the projection workers and the checkout
process (with its simulated payment gateway), in one process,
on the PostgreSQL database of --database-url (or ` + cli.EnvDatabaseURL + `) and, when
--elasticsearch-url (or ` + cli.EnvElasticsearchURL + `) is set, Elasticsearch for search.
With --kafka-brokers (or ` + cli.EnvKafkaBrokers + `) it also publishes the order events
to Kafka (topic orders.v1) for other services, such as examples/shipping.

A projection that stalls on an event it cannot handle stays stalled while
everything else keeps running, and serve starts with one stalled: GET /healthz
says "degraded: ..." and names it. Fix the cause, then run 'orders projections
resume NAME'; the running server starts that projection again.

With --metrics-addr it serves the metrics of the commands, the event store
and the projection workers for Prometheus at http://ADDR/metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := cli.ReadSettings(cmd)
			if err != nil {
				return err
			}
			if s.DatabaseURL == "" {
				return fmt.Errorf("no database: set --database-url or %s", cli.EnvDatabaseURL)
			}
			pool, err := app.NewPool(ctx, s.DatabaseURL, dbMaxConns)
			if err != nil {
				return err
			}
			defer pool.Close()
			cfg := app.Config{Pool: pool, Schema: s.Schema, Logger: logger(), KafkaBrokers: s.KafkaBrokers}
			cfg.Checkout = checkout.Config{PaymentTimeout: paymentTimeout}
			stopMetrics, err := serveMetrics(cmd.OutOrStdout(), metricsAddr, &cfg)
			if err != nil {
				return err
			}
			defer stopMetrics()
			if u := s.ElasticsearchURL; u != "" {
				if cfg.Elastic, err = elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{u}}); err != nil {
					return err
				}
			} else {
				cfg.SearchOff = "search is off: set --elasticsearch-url or " + cli.EnvElasticsearchURL + " to an Elasticsearch 8 server and start again"
			}
			a, err := app.New(ctx, cfg)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving the order API at http://%s\n", ln.Addr())
			return serve(ctx, a, ln)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().DurationVar(&paymentTimeout, "payment-timeout", checkout.PaymentTimeoutDefault, "how long a checkout waits for its payment before it voids it and cancels the order")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (default: off)")
	cmd.Flags().Int32Var(&dbMaxConns, "db-max-conns", 0, fmt.Sprintf("PostgreSQL connections of the pool (default: the URL's pool_max_conns, else %d)", app.PoolMaxConnsDefault))
	return cmd
}

func logger() *slog.Logger {
	return slog.New(cqrs.TraceLogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// serve runs a's workers and its API on ln until ctx ends.
func serve(ctx context.Context, a *app.App, ln net.Listener) error {
	return cli.Serve(ctx, ln, a.Handler, a.Run)
}
