// Command withkafka runs a command with TEST_KAFKA_URL naming a Kafka
// broker's bootstrap address, starting a throwaway one (see
// internal/localkafka) when the variable is unset, so that every test
// package of one `go test ./...` run shares one broker:
//
//	go run ./internal/cmd/withkafka -- go test -race ./...
//
// STRATA_SKIP_KAFKA=1 starts none. It exits with the command's exit code.
package main

import (
	"context"
	"os"
	"time"

	"github.com/stratadev/strata/internal/childcmd"
	"github.com/stratadev/strata/internal/localkafka"
)

// The variables projections/kafkasink/kafkatest reads.
const (
	envURL  = "TEST_KAFKA_URL"
	envSkip = "STRATA_SKIP_KAFKA"
)

func main() {
	os.Exit(childcmd.Main("withkafka", os.Args[1:], startServer))
}

// startServer starts a throwaway broker unless one is named already, and
// names it in the environment the command inherits.
func startServer() (stop func(), err error) {
	if os.Getenv(envURL) != "" || os.Getenv(envSkip) == "1" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := localkafka.Start(ctx, localkafka.Options{})
	if err != nil {
		return nil, err
	}
	os.Setenv(envURL, srv.URL())
	return func() { srv.Stop() }, nil
}
