// Command withpg runs a command with TEST_DATABASE_URL pointing at a
// PostgreSQL server, starting a throwaway one (see internal/localpg) when the
// variable is unset, so that every test package of one `go test ./...` run
// shares one server:
//
//	go run ./internal/cmd/withpg -- go test -race ./...
//
// It exits with the command's exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/localpg"
	"github.com/stratadev/strata/internal/pgtest"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withpg -- command [args...]")
		return 2
	}
	if os.Getenv(pgtest.EnvURL) == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		srv, err := localpg.Start(ctx, localpg.Options{})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer srv.Stop()
		os.Setenv(pgtest.EnvURL, srv.URL())
	}

	return childcmd.Run("withpg", args)
}
