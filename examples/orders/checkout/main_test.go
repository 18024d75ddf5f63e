package checkout_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

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
