package elasticsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/elastictest"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/pgsink"
)

// benchEvents is how many events BenchmarkIndex projects: 200,000 unless
// STRATA_BENCH_EVENTS says otherwise.
func benchEvents(b *testing.B) int {
	n := 200_000
	if s := os.Getenv("STRATA_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("STRATA_BENCH_EVENTS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// benchRuns numbers the indices of the benchmark's runs.
var benchRuns atomic.Int64

// field is a ~50-byte string field.
func field(kind string, i int) string {
	return fmt.Sprintf("%s %08d lorem ipsum dolor sit amet consectetur", kind, i)[:50]
}

// BenchmarkIndex indexes one order document per event: strata runs a
// worker with elasticsink from the start of the log until its checkpoint
// is at the head; raw sends the same documents (encoded from the same
// values) with go-elasticsearch's esutil.BulkIndexer, to an index with the
// same mappings.
func BenchmarkIndex(b *testing.B) {
	elastictest.URL(b)
	n := benchEvents(b)
	ctx := context.Background()
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 8})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	pg := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if err := pg.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	docs := make([]orderPlaced, n)
	for i := range n {
		docs[i] = orderPlaced{Order: "order-" + strconv.Itoa(i), Customer: field("customer", i%5000),
			Product: field("product", i%997), Total: i % 100000, Status: field("status", i%4)}
	}
	res, err := store.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
		for i, d := range docs {
			data, _ := json.Marshal(d)
			if !yield(pgstore.ImportEvent{Stream: "order-" + strconv.Itoa(i), Event: es.EventData{Type: "OrderPlaced", Data: data}}, nil) {
				return
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	head := res.Position
	client := elastictest.Client(b)
	const batch = 2000

	cleanup := func(alias string) {
		res, err := client.Indices.Delete([]string{alias + "-g*", alias + "-raw"}, client.Indices.Delete.WithIgnoreUnavailable(true),
			client.Indices.Delete.WithAllowNoIndices(true))
		if err == nil {
			res.Body.Close()
		}
	}
	heap := func() float64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapInuse) / (1 << 20)
	}

	b.Run("strata", func(b *testing.B) {
		var peak atomic.Uint64
		for b.Loop() {
			p := orderSearch{alias: fmt.Sprintf("bench-%s-%d", schema[len(schema)-8:], benchRuns.Add(1))}
			sink := elasticsink.New(client, pg, elasticsink.Config{Logger: quiet})
			b.StopTimer()
			if _, err := sink.EnsureIndex(ctx, p); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			w := elasticsink.NewWorker(store, newRegistry(), sink, p, projections.Config{BatchSize: batch, Logger: quiet})
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- w.Run(wctx) }()
			stopHeap := sampleHeap(&peak, heap)
			wait, wcancel := context.WithTimeout(ctx, 10*time.Minute)
			err := projections.WaitFor(wait, pg, p.Name(), head)
			wcancel()
			stopHeap()
			cancel()
			if rerr := <-done; err != nil || rerr != nil {
				b.Fatal(err, rerr)
			}
			b.StopTimer()
			cleanup(p.alias)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
		b.ReportMetric(float64(peak.Load()), "heap-MB")
	})

	b.Run("raw", func(b *testing.B) {
		var peak atomic.Uint64
		for b.Loop() {
			alias := fmt.Sprintf("bench-%s-raw%d", schema[len(schema)-8:], benchRuns.Add(1))
			index := alias + "-raw"
			b.StopTimer()
			ix := orderSearch{alias: alias}.Index()
			body := fmt.Sprintf(`{"mappings":%s,"settings":%s}`, ix.Mappings, ix.Settings)
			res, err := client.Indices.Create(index, client.Indices.Create.WithBody(bytes.NewReader([]byte(body))))
			if err != nil || res.IsError() {
				b.Fatal(err, res)
			}
			res.Body.Close()
			b.StartTimer()
			stopHeap := sampleHeap(&peak, heap)
			var failed atomic.Int64
			bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: client, Index: index})
			if err != nil {
				b.Fatal(err)
			}
			for _, d := range docs {
				src, err := json.Marshal(orderDoc{Customer: d.Customer, Product: d.Product, Total: d.Total, Status: d.Status, Stream: d.Order})
				if err != nil {
					b.Fatal(err)
				}
				err = bi.Add(ctx, esutil.BulkIndexerItem{Action: "index", DocumentID: d.Order, Body: bytes.NewReader(src),
					OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) { failed.Add(1) }})
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := bi.Close(ctx); err != nil {
				b.Fatal(err)
			}
			stopHeap()
			if f := failed.Load(); f > 0 || bi.Stats().NumIndexed != uint64(n) {
				b.Fatalf("raw: %d failed, %d indexed of %d", f, bi.Stats().NumIndexed, n)
			}
			b.StopTimer()
			cleanup(alias)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
		b.ReportMetric(float64(peak.Load()), "heap-MB")
	})
}

// sampleHeap records the peak of heap() every 50ms until stopped.
func sampleHeap(peak *atomic.Uint64, heap func() float64) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if h := uint64(heap()); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}
