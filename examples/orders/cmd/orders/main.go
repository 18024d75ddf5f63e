// Command orders runs the order example: its HTTP APIs and projection
// workers (serve), a scripted demo on throwaway servers (demo), a load
// generator (load), a read benchmark (bench), and the strata CLI's
// commands with the example's projections mounted, so that
// `orders projections rebuild order_view` and
// `orders projections rebuild order_search` work.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/publish"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

func main() {
	os.Exit(cli.Main(context.Background(), newRoot(cli.Config{}, readmodel.OrderSearch{}), os.Args[1:]))
}

// newRoot returns the orders command: cfg (its output and environment)
// with the example's name, registry and projections, search among them.
func newRoot(cfg cli.Config, search readmodel.OrderSearch) *cobra.Command {
	cfg.Name = "orders"
	cfg.Registry = orders.NewRegistry()
	for _, p := range app.Projections() {
		cfg.Projections = append(cfg.Projections, cli.Projection{Projection: p})
	}
	cfg.ElasticProjections = []cli.ElasticProjection{{Projection: search}}
	cfg.KafkaProjections = []cli.KafkaProjection{{Projection: publish.OrderEvents{}}}
	cfg.Kafka = publish.Config(nil) // brokers: --kafka-brokers or STRATA_KAFKA_BROKERS
	root := cli.New(cfg)
	root.Short = "The order example of strata: APIs, projections, demo, load generator, and the strata commands"
	root.Long = `The order example of strata.

  orders demo        throwaway servers, the APIs, a scripted scenario (make demo)
  orders serve       the write and read APIs and the projection workers
  orders load        write N orders through the write API or the command bus
  orders bench       measure the read API against N orders

and the commands of the strata CLI with the example's projections mounted,
order_view, orders_by_product, order_search and order_events (the
integration events it publishes to Kafka), such as:

  orders projections status
  orders projections rebuild order_view
  orders projections rebuild order_search    # after Elasticsearch lost its data

The event store, checkpoints and read models live in PostgreSQL
(--database-url or STRATA_DATABASE_URL); search needs Elasticsearch
(--elasticsearch-url or STRATA_ELASTICSEARCH_URL); publishing needs Kafka
(--kafka-brokers or STRATA_KAFKA_BROKERS). order_search keeps the orders it
indexes in PostgreSQL tables of its own, which serve creates.`
	root.AddCommand(serveCommand(), demoCommand(), loadCommand(), benchCommand())
	return root
}
