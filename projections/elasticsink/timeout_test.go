package elasticsink_test

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// An Elasticsearch node that stops answering, without refusing anything:
// each request times out, the status says the projection is retrying and
// why within seconds, and once the node answers again the projection
// catches up with every document once.
func TestFrozenElasticsearchShowsRetrying(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(elastictest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	e := newEnv(t)
	// The worker's sink talks through the proxy, with short timeouts.
	e.sink = elasticsink.New(elastictest.ClientOf(t, "http://"+px.addr), e.pg, elasticsink.Config{Logger: quiet,
		BulkTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	armed := new(atomic.Bool)
	// The freeze reaches the worker in a batch's bulk request, or, while it
	// is idle, in the look at its checkpoint and index: both retry.
	retrying := signalHandler{want: "transient error; retrying", or: "restarting from the checkpoint",
		once: new(sync.Once), ch: make(chan struct{}), armed: armed}
	e.run(t, projections.Config{Logger: slog.New(retrying), BatchSize: 20})
	first := e.appendOrders(t, 10)
	e.waitFor(t, first)

	px.freeze()
	armed.Store(true)
	frozen := time.Now()
	last := e.appendOrders(t, 100)
	select {
	case <-retrying.ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker did not retry within 30s of Elasticsearch freezing; status %+v", e.status(t))
	}
	st := e.status(t)
	if st.State != projections.StateRetrying || st.LastError == nil || !st.LastError.Retrying ||
		!strings.Contains(st.LastError.Error, "no answer from Elasticsearch within 2s") {
		t.Errorf("status = %s, last error %+v; want retrying after a timeout", st.State, st.LastError)
	}
	if d := time.Since(frozen); d > 15*time.Second {
		t.Errorf("status showed the timeout %v after the freeze, want within seconds", d)
	}

	px.unfreeze()
	e.waitFor(t, last)
	docs := e.docs(t)
	if len(docs) != 100 {
		t.Errorf("%d documents, want 100", len(docs))
	}
	for i := range 100 {
		if d, ok := docs[fmt.Sprintf("o%d", i)]; !ok || d.Source.Total != float64(i) {
			t.Errorf("o%d = %+v, want total %d", i, d, i)
		}
	}
	if st := e.status(t); st.State != projections.StateRunning || st.LastError != nil {
		t.Errorf("status after catching up = %s, last error %v; want running, none", st.State, st.LastError)
	}
}

// A worker that stopped while retrying leaves its record behind; the next
// worker clears it once it runs.
func TestRetryRecordClearedByNextWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.run(t, projections.Config{})
	first := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.waitFor(t, first)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f := projections.Failure{Position: first, Error: "elasticsink: bulk: no answer from Elasticsearch within 30s", Retrying: true}
	if err := e.sink.SetRetrying(t.Context(), e.proj.Name(), &f); err != nil {
		t.Fatal(err)
	}
	if st := e.status(t); st.State != projections.StateRetrying || st.LastError == nil || st.LastError.Error != f.Error {
		t.Fatalf("status = %s, last error %v; want retrying with %q", st.State, st.LastError, f.Error)
	}
	e.run(t, projections.Config{})
	last := e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"})
	e.waitFor(t, last)
	if st := e.status(t); st.State != projections.StateRunning || st.LastError != nil {
		t.Errorf("status = %s, last error %v; want running, none", st.State, st.LastError)
	}
}
