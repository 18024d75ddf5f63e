package checkout_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

var quiet = slog.New(slog.DiscardHandler)

// TestMain runs the tests against PostgreSQL (a throwaway server unless
// TEST_DATABASE_URL names one), then checks that no goroutine outlived
// them. With envWorkerSchema set, the binary is a worker process of the
// fault test instead.
func TestMain(m *testing.M) {
	if os.Getenv(envWorkerSchema) != "" {
		os.Exit(runWorker())
	}
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
