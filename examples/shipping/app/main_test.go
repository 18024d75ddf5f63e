package app_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// TestMain runs the tests against PostgreSQL and Kafka (throwaway servers
// unless TEST_DATABASE_URL and TEST_KAFKA_URL name some), then checks that
// no goroutine outlived them.
func TestMain(m *testing.M) {
	code := kafkatest.Run(m, pgtest.Run)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
