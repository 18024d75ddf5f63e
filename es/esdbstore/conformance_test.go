package esdbstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/esdbstore"
	"github.com/stratadev/strata/es/esdbstore/internal/esdbtest"
	"github.com/stratadev/strata/es/estest"
)

// EnvURL names a real EventStoreDB or KurrentDB node to run the
// conformance suite against as well, such as
// esdb://localhost:2113?tls=false.
const EnvURL = "TEST_ESDB_URL"

// open opens a store on url and closes it when the test ends.
func open(t *testing.T, cfg esdbstore.Config) *esdbstore.Store {
	t.Helper()
	s, err := esdbstore.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newTestServerStore returns a store on a fresh test server: a fresh, empty
// log, as the suite wants.
func newTestServerStore(t *testing.T) *esdbstore.Store {
	t.Helper()
	srv := esdbtest.Start(t)
	return open(t, esdbstore.Config{ConnectionString: srv.URL()})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	estest.Run(t, func(t *testing.T) es.Store { return newTestServerStore(t) }, estest.Config{
		NewLimited: func(t *testing.T, l es.SizeLimits) es.Store {
			srv := esdbtest.Start(t)
			return open(t, esdbstore.Config{ConnectionString: srv.URL(), MaxEventSize: l.MaxEventSize, MaxAppendSize: l.MaxAppendSize})
		},
	})
}

// TestConformanceRealServer runs the suite against the node TEST_ESDB_URL
// names. A real node cannot be emptied per test, so every store gets a
// namespace of its own.
func TestConformanceRealServer(t *testing.T) {
	url := os.Getenv(EnvURL)
	if url == "" {
		t.Skip(EnvURL + " is not set: the suite ran against the protocol test server only")
	}
	t.Parallel()
	estest.Run(t, func(t *testing.T) es.Store {
		return open(t, esdbstore.Config{ConnectionString: url, Namespace: "estest-" + randomID() + "-"})
	}, estest.Config{
		NewLimited: func(t *testing.T, l es.SizeLimits) es.Store {
			return open(t, esdbstore.Config{ConnectionString: url, Namespace: "estest-" + randomID() + "-",
				MaxEventSize: l.MaxEventSize, MaxAppendSize: l.MaxAppendSize})
		},
	})
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
