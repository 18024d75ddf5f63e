// Command withpg runs a command with TEST_DATABASE_URL pointing at a
// PostgreSQL server, starting a throwaway one (see [pgtest.Start]) when the
// variable is unset, so that every test package of one `go test ./...` run
// shares one server:
//
//	go run github.com/stratadev/strata/cmd/withpg -- go test -race ./...
//
// The server is stopped, and its data directory removed, when the command
// ends.
// It exits with the command's exit code.
package main

import (
	"context"
	"os"
	"time"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/internal/childcmd"
)

func main() {
	os.Exit(childcmd.Main("withpg", os.Args[1:], startServer))
}

// startServer starts a throwaway server unless one is named already, and
// names it in the environment the command inherits.
func startServer() (stop func(), err error) {
	if os.Getenv(pgtest.EnvURL) != "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.ServerConfig{})
	if err != nil {
		return nil, err
	}
	os.Setenv(pgtest.EnvURL, srv.URL())
	return func() { srv.Stop() }, nil
}
