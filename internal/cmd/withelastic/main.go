// Command withelastic runs a command with TEST_ELASTICSEARCH_URL pointing at
// an Elasticsearch server, starting a throwaway one (see
// internal/localelastic) when the variable is unset, so that every test
// package of one `go test ./...` run shares one server:
//
//	go run ./internal/cmd/withelastic -- go test -race ./...
//
// It exits with the command's exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/elastictest"
	"github.com/stratadev/strata/internal/localelastic"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withelastic -- command [args...]")
		return 2
	}
	if os.Getenv(elastictest.EnvURL) == "" && os.Getenv(elastictest.EnvSkip) != "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		srv, err := localelastic.Start(ctx, localelastic.Options{})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer srv.Stop()
		os.Setenv(elastictest.EnvURL, srv.URL())
	}

	return childcmd.Run("withelastic", args)
}
