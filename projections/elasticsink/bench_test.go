package elasticsink_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/bench"
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

// Bulk requests of BenchmarkIndex: the bulk indexer's are benchConcurrency
// in flight and flush at the bytes of as many of its items as strata's
// requests carry (strata's are bounded by actions; benchFlushBytes is out
// of their reach when the variant sets FlushActions).
const (
	benchConcurrency = elasticsink.ConcurrencyDefault
	benchFlushBytes  = 64 << 20
)

// BenchmarkIndex indexes one order document per event, with strata and
// two baselines by turns (one run of each per iteration, the order
// rotating) so that all three see the same neighbours on a shared machine:
//
//   - strata runs a worker with elasticsink from the start of the log until
//     its checkpoint is at the head: "defaults" with zero Configs (the
//     worker's batch size is the sink's advice), the others with the batch
//     size and FlushActions in their names, FlushBytes out of reach and
//     benchConcurrency requests in flight;
//   - loop is the hand-written projection to beat: it reads the log as the
//     worker does (Subscribe, decoded by the registry), encodes the same
//     documents from the same values and sends them with the same external
//     versions (numbered from 1, as strata's counter does) in plain Bulk
//     requests of as many documents as strata's (1000 for "defaults"),
//     one after the other, checking only each response's errors flag;
//   - bulkindexer sends the same documents, without versions, with
//     go-elasticsearch's esutil.BulkIndexer, benchConcurrency requests in
//     flight, flushed at the bytes of as many documents.
//
// Each writes to an index of its own with the same mappings and settings,
// and leaves refreshing to the index's refresh interval (1s).
//
// It reports each side's docs/s over all its runs; strata/loop and
// strata/bulkindexer as ratios of those totals (all of strata's documents
// over all its time, against the same for the baseline: not a median of
// per-iteration ratios); each side's peak heap and bulk requests per run;
// and the CPU each side cost per document in the Elasticsearch node (when
// it runs on this machine; all of the node's CPU, so a node of its own)
// and in the benchmark process (strata's and loop's include reading and
// decoding the log; PostgreSQL's CPU is not counted), which a busy machine
// distorts far less than wall time.
func BenchmarkIndex(b *testing.B) {
	bench := newIndexBench(b)
	for _, c := range []struct {
		name         string
		batch, flush int // 0: the defaults
	}{{"defaults", 0, 0}, {"batch=2000/flush=1000", 2000, 1000}, {"batch=20000/flush=10000", 20000, 10000}} {
		batch, flush := c.batch, c.flush
		docsPerReq := cmp.Or(flush, elasticsink.FlushActionsDefault)
		b.Run(c.name, func(b *testing.B) {
			var (
				s, l, r side
				turn    int
			)
			runs := []func(){
				func() { bench.strata(b, batch, flush, &s) },
				func() { bench.loop(b, docsPerReq, &l) },
				func() { bench.bulkIndexer(b, docsPerReq, &r) },
			}
			for b.Loop() {
				for i := range runs {
					runs[(turn+i)%len(runs)]()
				}
				turn++
			}
			docs := float64(bench.n * turn)
			b.ReportMetric(docs/s.wall.Seconds(), "strata-docs/s")
			b.ReportMetric(docs/l.wall.Seconds(), "loop-docs/s")
			b.ReportMetric(docs/r.wall.Seconds(), "bulkindexer-docs/s")
			b.ReportMetric(l.wall.Seconds()/s.wall.Seconds(), "strata/loop")
			b.ReportMetric(r.wall.Seconds()/s.wall.Seconds(), "strata/bulkindexer")
			for _, x := range []struct {
				name string
				s    *side
			}{{"strata", &s}, {"loop", &l}, {"bulkindexer", &r}} {
				b.ReportMetric(float64(x.s.heap.Load()), x.name+"-heap-MB")
				b.ReportMetric(float64(x.s.reqs)/float64(turn), x.name+"-reqs/run")
				b.ReportMetric(float64(x.s.esCPU.Microseconds())/docs, x.name+"-es-cpu-µs/doc")
				b.ReportMetric(float64(x.s.goCPU.Microseconds())/docs, x.name+"-go-cpu-µs/doc")
			}
		})
	}
}

// side adds up one side's runs.
type side struct {
	wall, esCPU, goCPU time.Duration
	heap               atomic.Uint64 // peak, MiB
	reqs               int64
}

// window brackets the timed part of a run: call it before, and call what
// it returns after.
func (s *side) window(x *indexBench) func() {
	es0, go0 := x.esCPU(), bench.Process()
	start := time.Now()
	return func() {
		s.wall += time.Since(start)
		s.esCPU += x.esCPU() - es0
		s.goCPU += bench.Process() - go0
	}
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

// strata runs a worker from the start of the log to its head, adding its
// time to s. With batch and flush 0, both Configs are zero but for their
// loggers.
func (x *indexBench) strata(b *testing.B, batch, flush int, s *side) {
	ctx := context.Background()
	p := orderSearch{alias: fmt.Sprintf("bench-%s-%d", x.schema[len(x.schema)-8:], benchRuns.Add(1))}
	defer x.cleanup(p.alias)
	cfg := elasticsink.Config{Logger: quiet}
	if flush > 0 {
		cfg.FlushActions, cfg.FlushBytes, cfg.Concurrency = flush, benchFlushBytes, benchConcurrency
	}
	sink := elasticsink.New(x.client, x.pg, cfg)
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

// createIndex creates an index for a baseline, with the mappings and
// settings of strata's, and returns its name and a function that deletes
// it.
func (x *indexBench) createIndex(b *testing.B) (index string, cleanup func()) {
	alias := fmt.Sprintf("bench-%s-raw%d", x.schema[len(x.schema)-8:], benchRuns.Add(1))
	index = alias + "-raw"
	ix := orderSearch{alias: alias}.Index()
	body := fmt.Sprintf(`{"mappings":%s,"settings":%s}`, ix.Mappings, ix.Settings)
	res, err := x.client.Indices.Create(index, x.client.Indices.Create.WithBody(strings.NewReader(body)))
	if err != nil || res.IsError() {
		b.Fatal(err, res)
	}
	res.Body.Close()
	return index, func() { x.cleanup(alias) }
}

// loop is the hand-written projection: it reads the log from the start
// as a worker does, and sends each page of flush events as one plain bulk
// request of documents with external versions, one request at a time,
// until it has sent the head; it adds its time to s.
func (x *indexBench) loop(b *testing.B, flush int, s *side) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	index, cleanup := x.createIndex(b)
	defer cleanup()
	bulk := x.client.Bulk

	end := s.window(x)
	stopHeap := sampleHeap(&s.heap)
	var (
		reg     = newRegistry()
		body    bytes.Buffer
		version int64
	)
	for recs, err := range x.store.Subscribe(ctx, es.SubscribeOptions{BatchSize: flush}) {
		if err != nil {
			b.Fatal(err)
		}
		body.Reset()
		for _, r := range recs {
			v, err := reg.Decode(r)
			if err != nil {
				b.Fatal(err)
			}
			d := v.(orderPlaced)
			src, err := json.Marshal(orderDoc{Customer: d.Customer, Product: d.Product, Total: d.Total, Status: d.Status, Stream: r.Stream})
			if err != nil {
				b.Fatal(err)
			}
			version++
			body.WriteString(`{"index":{"_id":"`)
			body.WriteString(d.Order)
			body.WriteString(`","version":`)
			body.WriteString(strconv.FormatInt(version, 10))
			body.WriteString(`,"version_type":"external"}}` + "\n")
			body.Write(src)
			body.WriteByte('\n')
		}
		res, err := bulk(bytes.NewReader(body.Bytes()), bulk.WithContext(ctx), bulk.WithIndex(index), bulk.WithFilterPath("errors"))
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			Errors bool `json:"errors"`
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil || res.IsError() || out.Errors {
			b.Fatalf("loop: bulk: %v, %s, errors %v", err, res.Status(), out.Errors)
		}
		s.reqs++
		if !recs[len(recs)-1].Position.Before(x.head) {
			break
		}
	}
	end()
	stopHeap()
	if version != int64(x.n) {
		b.Fatalf("loop: sent %d documents, want %d", version, x.n)
	}
}

// bulkIndexer indexes the same documents with esutil.BulkIndexer, adding
// its time to s.
func (x *indexBench) bulkIndexer(b *testing.B, flushActions int, s *side) {
	ctx := context.Background()
	index, cleanup := x.createIndex(b)
	defer cleanup()
	encode := func(d orderPlaced) []byte {
		src, err := json.Marshal(orderDoc{Customer: d.Customer, Product: d.Product, Total: d.Total, Status: d.Status, Stream: d.Order})
		if err != nil {
			b.Fatal(err)
		}
		return src
	}
	// Flush at the bytes of flushActions items, as BulkIndexer counts
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
		b.Fatalf("bulk indexer: %d failed, %d indexed of %d", f, st.NumIndexed, x.n)
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
