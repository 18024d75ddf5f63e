package shipping_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

// TestMain runs the tests against PostgreSQL (a throwaway server unless
// TEST_DATABASE_URL names one), then checks that no goroutine outlived
// them.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
