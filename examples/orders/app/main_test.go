package app_test

import (
	"os"
	"testing"

	"github.com/stratadev/strata/internal/elastictest"
	"github.com/stratadev/strata/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(elastictest.Run(m, pgtest.Run)) }
