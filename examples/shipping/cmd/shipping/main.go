// Command shipping is the shipping service of the order example: it builds
// its own copy of the orders from the order service's integration events on
// Kafka, turns confirmed and cancelled orders into shipment commands, and
// serves what it knows at GET /shipments/{order_id}.
//
//	shipping serve --database-url postgres://... --kafka-brokers 127.0.0.1:9092
//	shipping consumers                 # the Kafka consumers' state, members, counts and lag
//	shipping projections status        # and every other strata command, on its schema
//
// Its tables are in the schema "shipping" unless --schema (or STRATA_SCHEMA)
// says otherwise: the service shares no table with the order service, even
// in one database.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/examples/shipping"
	"github.com/stratadev/strata/examples/shipping/app"
)

func main() {
	root := cli.New(cli.Config{
		Name:        "shipping",
		Registry:    shipping.NewRegistry(),
		Projections: []cli.Projection{{Projection: shipping.Shipments{}}},
		Schema:      app.SchemaDefault, // its own; --schema and STRATA_SCHEMA still win
	})
	root.AddCommand(serveCommand())
	os.Exit(cli.Main(context.Background(), root, os.Args[1:]))
}

func serveCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Consume the order service's events and serve GET /shipments/{order_id}",
		Long: `Consume the order service's integration events from Kafka (--kafka-brokers,
or STRATA_KAFKA_BROKERS) into the service's copy of the orders and into
shipment commands, run the shipments projection, and serve the read API,
until interrupted.`,
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
			if len(s.KafkaBrokers) == 0 {
				return fmt.Errorf("no Kafka: set --kafka-brokers or %s", cli.EnvKafkaBrokers)
			}
			pool, err := newPool(ctx, s.DatabaseURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			a, err := app.New(ctx, app.Config{Pool: pool, Schema: s.Schema, Brokers: s.KafkaBrokers, Logger: logger()})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving the shipping API at http://%s\n", ln.Addr())
			return serve(ctx, a, ln)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "address to listen on")
	return cmd
}

func logger() *slog.Logger {
	return slog.New(cqrs.TraceLogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// serve runs a's consumers, its worker and its API on ln until ctx ends.
func serve(ctx context.Context, a *app.App, ln net.Listener) error {
	return cli.Serve(ctx, ln, a.Handler, a.Run)
}
