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
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/localelastic"
)

// The variables projections/elasticsink/elastictest reads.
const (
	envURL  = "TEST_ELASTICSEARCH_URL"
	envSkip = "STRATA_SKIP_ELASTIC"
)

func main() {
	os.Exit(childcmd.Main("withelastic", os.Args[1:], startServer))
}

// startServer starts a throwaway server unless one is named already, and
// names it in the environment the command inherits.
func startServer() (stop func(), err error) {
	if os.Getenv(envURL) != "" || os.Getenv(envSkip) == "1" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	srv, err := localelastic.Start(ctx, localelastic.Options{})
	if err != nil {
		return nil, err
	}
	os.Setenv(envURL, srv.URL())
	return func() { srv.Stop() }, nil
}
