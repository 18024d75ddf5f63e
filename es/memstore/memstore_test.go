package memstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/estest"
	"github.com/stratadev/strata/es/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	t.Parallel()
	estest.Run(t, func(*testing.T) es.Store { return memstore.New() }, estest.Config{})
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	estest.RunSnapshots(t, func(*testing.T) es.SnapshotStore { return memstore.New() })
}
