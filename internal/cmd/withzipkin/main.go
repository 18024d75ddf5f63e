// Command withzipkin runs a command with TEST_ZIPKIN_URL naming a Zipkin
// server's base address (http://127.0.0.1:PORT), starting a throwaway one
// (see internal/localzipkin) when the variable is unset, so that every test
// package of one `go test ./...` run shares one server:
//
//	go run ./internal/cmd/withzipkin -- go test -race ./...
//
// STRATA_SKIP_ZIPKIN=1 starts none. It exits with the command's exit code.
package main

import (
	"context"
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/localzipkin"
)

// The variables the tests that read traces back use.
const (
	envURL  = "TEST_ZIPKIN_URL"
	envSkip = "STRATA_SKIP_ZIPKIN"
)

func main() {
	os.Exit(childcmd.Main("withzipkin", os.Args[1:], startServer))
}

// startServer starts a throwaway server unless one is named already, and
// names it in the environment the command inherits.
func startServer() (stop func(), err error) {
	if os.Getenv(envURL) != "" || os.Getenv(envSkip) == "1" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localzipkin.Start(ctx, localzipkin.Options{})
	if err != nil {
		return nil, err
	}
	os.Setenv(envURL, srv.URL())
	return func() { srv.Stop() }, nil
}
