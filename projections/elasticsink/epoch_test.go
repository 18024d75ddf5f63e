package elasticsink_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// On a PostgreSQL cluster past 2^32 transactions, where pgstore's
// positions do not fit the 63 bits of an Elasticsearch version, a
// projection applies, rebuilds and replays: its versions are its own.
func TestMatureDatabase(t *testing.T) {
	t.Parallel()
	elastictest.URL(t)
	if _, err := pgtest.FindBinaries(); err != nil {
		t.Skip(err)
	}
	srv, err := pgtest.Start(t.Context(), pgtest.ServerConfig{XactEpoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	pool, err := pgxpool.New(t.Context(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var xid int64
	if err := pool.QueryRow(t.Context(), "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if xid <= 1<<32 {
		t.Fatalf("pg_current_xact_id() = %d, want above 2^32", xid)
	}
	e := newEnvOn(t, pool, "strata", elastictest.Client(t), elasticsink.Config{})

	// A model of what the index must hold.
	want := map[string]orderDoc{}
	var last es.Position
	place := func(i int) {
		id := fmt.Sprintf("o%d", i)
		doc := orderDoc{Customer: fmt.Sprintf("c%d", i), Product: "chair", Total: float64(i), Status: "placed", Stream: "order-" + id}
		last = e.append(t, doc.Stream, orderPlaced{Order: id, Customer: doc.Customer, Product: doc.Product, Total: i, Status: doc.Status})
		want[id] = doc
	}
	pay := func(i int) {
		id := fmt.Sprintf("o%d", i)
		last = e.append(t, "order-"+id, statusChanged{Order: id, Status: "paid"})
		d := want[id]
		d.Status = "paid"
		want[id] = d
	}
	cancel := func(i int) {
		id := fmt.Sprintf("o%d", i)
		last = e.append(t, "order-"+id, orderCancelled{Order: id})
		delete(want, id)
	}
	check := func(stage string) {
		t.Helper()
		e.waitFor(t, last)
		docs := e.docs(t)
		if len(docs) != len(want) {
			t.Errorf("%s: %d documents, want %d", stage, len(docs), len(want))
		}
		for id, w := range want {
			if d, ok := docs[id]; !ok || d.Source != w {
				t.Errorf("%s: %s = %+v, want %+v", stage, id, d.Source, w)
			}
		}
	}

	stop := e.run(t, projections.Config{BatchSize: 7})
	for i := range 30 {
		place(i)
	}
	for i := 0; i < 30; i += 3 {
		pay(i)
	}
	if last.Commit <= 1<<32 {
		t.Fatalf("position %s, want a commit part above 2^32", last)
	}
	if _, err := elasticsink.PackedVersion(last); !errors.Is(err, elasticsink.ErrVersionRange) {
		t.Fatalf("PackedVersion(%s) error = %v; the test needs positions it cannot pack", last, err)
	}
	check("live")

	// A rebuild while the live worker runs, then more events through the
	// new generation.
	if err := e.sink.Rebuild(t.Context(), e.store, e.reg, e.proj, elasticsink.RebuildConfig{Worker: projections.Config{Logger: quiet, BatchSize: 11}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i += 5 {
		cancel(i)
	}
	place(30)
	pay(30)
	check("after the rebuild")

	// A replay from the start into the same index.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Reset(t.Context(), e.proj.Name(), es.Start); err != nil {
		t.Fatal(err)
	}
	stop = e.run(t, projections.Config{BatchSize: 5})
	place(31)
	check("after the replay")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
