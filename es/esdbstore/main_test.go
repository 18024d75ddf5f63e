package esdbstore_test

import (
	"testing"

	"github.com/stratadev/strata/internal/pgtest"
)

// TestMain starts PostgreSQL for the projection test (unless
// TEST_DATABASE_URL names one) and checks for leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }
