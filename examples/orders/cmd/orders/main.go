// Command orders runs the order example: its HTTP APIs and projection
// workers (serve), a scripted demo on throwaway servers (demo), a load
// generator (load), a read benchmark (bench), and the strata CLI's
// commands with the example's projections mounted, so that
// `orders projections rebuild order_view` works.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
)

func main() {
	root := cli.New(cli.Config{Name: "orders", Registry: orders.NewRegistry(), Projections: cliProjections()})
	root.Short = "The order example of strata: APIs, projections, demo, load generator, and the strata commands"
	root.Long = `The order example of strata.

  orders demo        throwaway servers, the APIs, a scripted scenario (make demo)
  orders serve       the write and read APIs and the projection workers
  orders load        write N orders through the write API or the command bus
  orders bench       measure the read API against N orders

and the commands of the strata CLI with the example's projections mounted,
such as: orders projections rebuild order_view

The event store, checkpoints and read models live in PostgreSQL
(--database-url or STRATA_DATABASE_URL); search needs Elasticsearch
(--elasticsearch-url or STRATA_ELASTICSEARCH_URL).`
	root.AddCommand(serveCommand(), demoCommand(), loadCommand(), benchCommand())
	os.Exit(cli.Main(context.Background(), root, os.Args[1:]))
}

func cliProjections() []cli.Projection {
	var ps []cli.Projection
	for _, p := range app.Projections() {
		ps = append(ps, cli.Projection{Projection: p})
	}
	return ps
}

// setting returns the root's persistent flag, or else the environment
// variable, or else the flag's default.
func setting(cmd *cobra.Command, flag, env string) string {
	f := cmd.Root().PersistentFlags().Lookup(flag)
	if f != nil && f.Changed {
		return f.Value.String()
	}
	if v := os.Getenv(env); v != "" {
		return v
	}
	if f != nil {
		return f.Value.String()
	}
	return ""
}
