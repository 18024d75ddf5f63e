package elasticsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
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

// Bulk requests of both sides of BenchmarkIndex: benchConcurrency in
// flight. strata's are bounded by the actions in the benchmark's name
// (benchFlushBytes is out of reach), and raw flushes at the bytes of that
// many of its items.
const (
	benchConcurrency = elasticsink.ConcurrencyDefault
	benchFlushBytes  = 64 << 20
)

// BenchmarkIndex indexes one order document per event, strata and raw by
// turns (one run of each per iteration, the order alternating) so that both
// see the same neighbours on a shared machine. strata runs a worker with
// elasticsink from the start of the log until its checkpoint is at the
// head, with batches of the size in the benchmark's name; raw sends the same
// documents (encoded from the same values) with go-elasticsearch's
// esutil.BulkIndexer to an index with the same mappings and settings. Both
// send requests of the same number of documents (flush in the name),
// benchConcurrency at a time, and leave refreshing to the index's refresh
// interval (1s); strata's also carry external versions.
//
// It reports each side's docs/s over all its runs, the median of the
// runs' strata/raw throughput ratios, each side's peak heap and its bulk
// requests per run, and the CPU each side cost per document in the
// Elasticsearch node (when it runs on this machine; all of the node's CPU,
// so a node of its own) and in the benchmark process (strata's includes
// reading and decoding the log; PostgreSQL's CPU is not counted), which a
// busy machine distorts far less than wall time.
func BenchmarkIndex(b *testing.B) {
	bench := newIndexBench(b)
	for _, c := range []struct{ batch, flush int }{{2000, 1000}, {20000, 10000}} {
		batch, flush := c.batch, c.flush
		b.Run(fmt.Sprintf("batch=%d/flush=%d", batch, flush), func(b *testing.B) {
			var (
				s, r   side
				ratios []float64
				turn   int
			)
			for b.Loop() {
				turn++
				var ds, dr time.Duration
				if turn%2 == 1 {
					ds = s.run(func() { bench.strata(b, batch, flush, &s) })
					dr = r.run(func() { bench.raw(b, flush, &r) })
				} else {
					dr = r.run(func() { bench.raw(b, flush, &r) })
					ds = s.run(func() { bench.strata(b, batch, flush, &s) })
				}
				ratios = append(ratios, dr.Seconds()/ds.Seconds())
			}
			slices.Sort(ratios)
			docs := float64(bench.n * turn)
			b.ReportMetric(docs/s.wall.Seconds(), "strata-docs/s")
			b.ReportMetric(docs/r.wall.Seconds(), "raw-docs/s")
			b.ReportMetric(ratios[len(ratios)/2], "strata/raw")
			b.ReportMetric(float64(s.heap.Load()), "strata-heap-MB")
			b.ReportMetric(float64(r.heap.Load()), "raw-heap-MB")
			b.ReportMetric(float64(s.reqs)/float64(turn), "strata-reqs/run")
			b.ReportMetric(float64(r.reqs)/float64(turn), "raw-reqs/run")
			b.ReportMetric(float64(s.esCPU.Microseconds())/docs, "strata-es-cpu-µs/doc")
			b.ReportMetric(float64(r.esCPU.Microseconds())/docs, "raw-es-cpu-µs/doc")
			b.ReportMetric(float64(s.goCPU.Microseconds())/docs, "strata-go-cpu-µs/doc")
			b.ReportMetric(float64(r.goCPU.Microseconds())/docs, "raw-go-cpu-µs/doc")
		})
	}
}

// side adds up one side's runs.
type side struct {
	wall, esCPU, goCPU time.Duration
	heap               atomic.Uint64 // peak, MiB
	reqs               int64
}

// run runs f, which times itself with s.window, and returns the wall time
// it added.
func (s *side) run(f func()) time.Duration {
	before := s.wall
	f()
	return s.wall - before
}

// window brackets the timed part of a run: call it before, and call what
// it returns after.
func (s *side) window(x *indexBench) func() {
	es0, go0 := x.esCPU(), processCPU()
	start := time.Now()
	return func() {
		s.wall += time.Since(start)
		s.esCPU += x.esCPU() - es0
		s.goCPU += processCPU() - go0
	}
}

// processCPU is the CPU time of the benchmark process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// esCPU is the CPU time of the Elasticsearch node so far, read from
// /proc (its node stats refresh their CPU figure only every second); 0
// when the node runs elsewhere.
func (x *indexBench) esCPU() time.Duration {
	if x.esPID == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", x.esPID))
	if err != nil {
		return 0
	}
	// The fields after the command (in parentheses): state is field 3,
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// localPID returns the process ID of the Elasticsearch node when it runs
// on this machine, or 0.
func localPID(b *testing.B, client *elasticsearch.Client) int {
	res, err := client.Nodes.Info(client.Nodes.Info.WithNodeID("_local"), client.Nodes.Info.WithMetric("process"))
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Nodes map[string]struct {
			Host    string `json:"host"`
			Process struct {
				ID int `json:"id"`
			} `json:"process"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		b.Fatal(err)
	}
	for _, n := range out.Nodes {
		if n.Host == "127.0.0.1" || n.Host == "localhost" {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", n.Process.ID)); err == nil {
				return n.Process.ID
			}
		}
	}
	return 0
}

type indexBench struct {
	n      int
	docs   []orderPlaced
	store  *pgstore.Store
	pg     *pgsink.Sink
	head   es.Position
	schema string
	client *elasticsearch.Client
	bulks  *atomic.Int64 // bulk requests sent through client
	esPID  int           // of the node, when it runs here
}

// newIndexBench loads the events (outside any timing) and makes a client
// that counts bulk requests.
func newIndexBench(b *testing.B) *indexBench {
	url := elastictest.URL(b)
	ctx := context.Background()
	n := benchEvents(b)
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 8})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	pg := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := pg.Migrate(ctx); err != nil {
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	b.Cleanup(tr.CloseIdleConnections)
	bulks := new(atomic.Int64)
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{url}, Transport: countBulks{tr, bulks}})
	if err != nil {
		b.Fatal(err)
	}
	return &indexBench{n: n, docs: docs, store: store, pg: pg, head: res.Position, schema: schema, client: client,
		bulks: bulks, esPID: localPID(b, client)}
}

// countBulks counts the bulk requests it carries.
type countBulks struct {
	http.RoundTripper
	n *atomic.Int64
}

func (c countBulks) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/_bulk") {
		c.n.Add(1)
	}
	return c.RoundTripper.RoundTrip(r)
}

func (x *indexBench) cleanup(alias string) {
	del := x.client.Indices.Delete
	res, err := del([]string{alias + "-g*", alias + "-raw"}, del.WithIgnoreUnavailable(true), del.WithAllowNoIndices(true))
	if err == nil {
		res.Body.Close()
	}
}

// strata runs a worker from the start of the log to its head, and returns
// how long that took.
func (x *indexBench) strata(b *testing.B, batch, flush int, s *side) {
	ctx := context.Background()
	p := orderSearch{alias: fmt.Sprintf("bench-%s-%d", x.schema[len(x.schema)-8:], benchRuns.Add(1))}
	defer x.cleanup(p.alias)
	sink := elasticsink.New(x.client, x.pg, elasticsink.Config{Logger: quiet,
		FlushActions: flush, FlushBytes: benchFlushBytes, Concurrency: benchConcurrency})
	if _, err := sink.EnsureIndex(ctx, p); err != nil {
		b.Fatal(err)
	}
	bulks0 := x.bulks.Load()
	end := s.window(x)
	w := elasticsink.NewWorker(x.store, newRegistry(), sink, p, projections.Config{BatchSize: batch, Logger: quiet})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	stopHeap := sampleHeap(&s.heap)
	wait, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	err := projections.WaitFor(wait, x.pg, p.Name(), x.head)
	wcancel()
	end()
	stopHeap()
	cancel()
	if rerr := <-done; err != nil || rerr != nil {
		b.Fatal(err, rerr)
	}
	s.reqs += x.bulks.Load() - bulks0
}

// raw indexes the same documents with esutil.BulkIndexer, and returns how
// long that took.
func (x *indexBench) raw(b *testing.B, flushActions int, s *side) {
	ctx := context.Background()
	alias := fmt.Sprintf("bench-%s-raw%d", x.schema[len(x.schema)-8:], benchRuns.Add(1))
	index := alias + "-raw"
	defer x.cleanup(alias)
	ix := orderSearch{alias: alias}.Index()
	body := fmt.Sprintf(`{"mappings":%s,"settings":%s}`, ix.Mappings, ix.Settings)
	res, err := x.client.Indices.Create(index, x.client.Indices.Create.WithBody(strings.NewReader(body)))
	if err != nil || res.IsError() {
		b.Fatal(err, res)
	}
	res.Body.Close()
	encode := func(d orderPlaced) []byte {
		src, err := json.Marshal(orderDoc{Customer: d.Customer, Product: d.Product, Total: d.Total, Status: d.Status, Stream: d.Order})
		if err != nil {
			b.Fatal(err)
		}
		return src
	}
	// Flush at the bytes of benchFlushActions items, as BulkIndexer counts
	// them (its meta line, the document and two newlines).
	flush := 1
	for _, d := range x.docs[:min(flushActions, len(x.docs))] {
		meta := fmt.Sprintf(`{"index":{"_id":%q,"_index":%q}}`, d.Order, index)
		flush += len(meta) + len(encode(d)) + 2
	}

	end := s.window(x)
	stopHeap := sampleHeap(&s.heap)
	var failed atomic.Int64
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: x.client, Index: index,
		NumWorkers: benchConcurrency, FlushBytes: flush})
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range x.docs {
		err = bi.Add(ctx, esutil.BulkIndexerItem{Action: "index", DocumentID: d.Order, Body: bytes.NewReader(encode(d)),
			OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) { failed.Add(1) }})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		b.Fatal(err)
	}
	end()
	stopHeap()
	st := bi.Stats()
	if f := failed.Load(); f > 0 || st.NumIndexed != uint64(x.n) {
		b.Fatalf("raw: %d failed, %d indexed of %d", f, st.NumIndexed, x.n)
	}
	s.reqs += int64(st.NumRequests)
}

// sampleHeap records the peak of the heap in use, in MiB, every 50ms until
// stopped.
func sampleHeap(peak *atomic.Uint64) func() {
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse >> 20
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if h := heap(); h > peak.Load() {
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
