// Command withzipkin runs a command with TEST_ZIPKIN_URL naming a Zipkin
// server's base address (http://127.0.0.1:PORT), starting a throwaway one
// (see internal/localzipkin) when the variable is unset, so that every test
// package of one `go test ./...` run shares one server:
//
//	go run ./internal/cmd/withzipkin -- go test -race ./...
//
// It does not wait for the server: the command starts at once, while the
// JVM starts (about 5 s), so that Zipkin comes up in the time the other
// servers and the test builds take; tests wait for its /health themselves
// (localzipkin.WaitReady). STRATA_SKIP_ZIPKIN=1 starts none. It exits with
// the command's exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/localproc"
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

// startServer starts a throwaway server in the background unless one is
// named already, and names it in the environment the command inherits.
func startServer() (stop func(), err error) {
	if os.Getenv(envURL) != "" || os.Getenv(envSkip) == "1" {
		return nil, nil
	}
	if _, err := localzipkin.FindJar(); err != nil {
		return nil, err
	}
	port, err := localproc.FreePort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	type result struct {
		srv *localzipkin.Server
		err error
	}
	started := make(chan result, 1)
	go func() {
		srv, err := localzipkin.Start(ctx, localzipkin.Options{Port: port})
		started <- result{srv, err}
	}()
	os.Setenv(envURL, fmt.Sprintf("http://127.0.0.1:%d", port))
	return func() {
		var r result
		select {
		case r = <-started:
			if r.err != nil { // the tests that needed it failed with it too
				fmt.Fprintf(os.Stderr, "withzipkin: %s\n", localproc.LastLines([]byte(r.err.Error()), 3))
			}
		default: // the command is done before the server is up
			cancel()
			r = <-started
		}
		cancel()
		if r.srv != nil {
			r.srv.Stop()
		}
	}, nil
}
