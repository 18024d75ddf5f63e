// Command strata inspects a strata event store and runs, watches and
// rebuilds projections. It is the commands of package cli with no
// application code; applications mount the same commands, with their
// projections, in their own binary (see cli.New).
package main

import (
	"context"
	"os"

	"github.com/stratadev/strata/cmd/strata/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), cli.New(cli.Config{}), os.Args[1:]))
}
