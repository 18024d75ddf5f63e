package elasticsink_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

func (e env) appendOrders(t *testing.T, n int) es.Position {
	t.Helper()
	var last es.Position
	for i := 0; i < n; i += 50 {
		var evs []any
		for j := i; j < min(i+50, n); j++ {
			evs = append(evs, orderPlaced{Order: fmt.Sprintf("o%d", j), Customer: fmt.Sprintf("c%d", j%7), Product: "chair", Total: j, Status: "placed"})
		}
		last = e.append(t, fmt.Sprintf("orders-%d", i), evs...)
	}
	return last
}

// A search on the alias keeps answering, with every document, while a
// rebuild builds a new index, swaps the alias and deletes the old one.
func TestRebuildSwapKeepsSearchAnswering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 600
	last := e.appendOrders(t, n)
	e.run(t, projections.Config{}) // the live worker keeps running throughout
	e.waitFor(t, last)
	e.refresh(t)
	oldIndex, err := e.sink.EnsureIndex(t.Context(), e.proj)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		searches atomic.Int64
		bad      atomic.Value
		swapped  = make(chan struct{})
	)
	wg.Go(func() {
		after := 0 // searches since the swap
		for ctx.Err() == nil {
			r, err := elasticsink.Search[orderDoc](ctx, e.client, e.proj.alias,
				map[string]any{"size": 0, "track_total_hits": true, "query": map[string]any{"term": map[string]any{"product": "chair"}}})
			if ctx.Err() != nil {
				return
			}
			searches.Add(1)
			if err != nil || r.Total != n {
				bad.Store(fmt.Sprintf("search %d: total %d, error %v", searches.Load(), r.Total, err))
				return
			}
			select {
			case <-swapped:
				if after++; after == 20 {
					return
				}
			default:
			}
		}
	})
	var progress []projections.RebuildProgress
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, e.proj, elasticsink.RebuildConfig{
		Worker:        projections.Config{Logger: quiet, BatchSize: 100},
		ProgressEvery: 20 * time.Millisecond,
		Progress:      func(p projections.RebuildProgress) { progress = append(progress, p) },
	})
	close(swapped)
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatal(err)
	}
	wg.Wait()
	cancel()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	if searches.Load() < 20 {
		t.Errorf("only %d searches ran", searches.Load())
	}
	newIndex, err := e.sink.EnsureIndex(t.Context(), e.proj)
	if err != nil {
		t.Fatal(err)
	}
	if newIndex == oldIndex || !strings.HasPrefix(newIndex, e.proj.alias+"-g") {
		t.Errorf("alias on %s after the rebuild, was on %s", newIndex, oldIndex)
	}
	res, err := e.client.Indices.Exists([]string{oldIndex})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("old index %s: %s, want it deleted", oldIndex, res.Status())
	}
	if len(progress) == 0 || !progress[len(progress)-1].Swapped || progress[len(progress)-1].Done != progress[len(progress)-1].Total {
		t.Errorf("progress = %+v, want it to end swapped and done", progress)
	}
	// On pgstore progress counts events, not positions.
	if events, err := e.store.CountEvents(t.Context(), es.Start, last); err != nil || progress[0].Total != events || progress[0].Estimated {
		t.Errorf("progress = %+v, %v; want a Total of %d events, counted", progress, err, events)
	}
	// The live worker goes on, into the new index.
	more := e.append(t, "order-late", orderPlaced{Order: "late", Customer: "z", Product: "chair", Total: 1, Status: "placed"})
	e.waitFor(t, more)
	if docs := e.docs(t); len(docs) != n+1 {
		t.Errorf("%d documents after the rebuild and one more event, want %d", len(docs), n+1)
	}
	cp, err := e.pg.Checkpoint(t.Context(), e.proj.Name()+"#rebuild")
	if err != nil || cp.Position != es.Start {
		t.Errorf("rebuild checkpoint = %+v, %v; want it gone", cp, err)
	}
}

// proxy forwards TCP connections to an address until it is cut, which
// closes its listener and every connection, like a server that stops; it
// listens again on the same port when restored. While frozen it accepts
// connections and bytes but forwards nothing, like a server that hangs.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	thaw         chan struct{} // closed on unfreeze; nil when not frozen
	wg           sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(u, c) })
			p.wg.Go(func() { p.pipe(c, u) })
		}
	})
}

// pipe copies src to dst, holding each chunk while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thaw := p.thaw
			p.mu.Unlock()
			if thaw != nil {
				<-thaw
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
}

func (p *proxy) unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thaw != nil {
		close(p.thaw)
		p.thaw = nil
	}
}

func (p *proxy) cut() {
	p.unfreeze()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// signalHandler is a slog handler that signals once a message containing
// want is logged (after armed is set, when there is armed).
type signalHandler struct {
	want  string
	or    string // another message that signals too, when set
	once  *sync.Once
	ch    chan struct{}
	armed *atomic.Bool
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	match := strings.Contains(r.Message, h.want) || (h.or != "" && strings.Contains(r.Message, h.or))
	if match && (h.armed == nil || h.armed.Load()) {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// Elasticsearch goes away in the middle of a rebuild and comes back: the
// rebuild waits, resumes and ends with every document once, at the version
// of its event.
func TestRebuildSurvivesElasticsearchOutage(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(elastictest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	e := newEnvWith(t, elastictest.ClientOf(t, "http://"+px.addr), elasticsink.Config{})
	const n = 1500
	last := e.appendOrders(t, n)

	failing := signalHandler{want: "transient error; retrying", once: new(sync.Once), ch: make(chan struct{})}
	var (
		cutOnce  sync.Once
		restored = make(chan struct{})
	)
	go func() {
		select {
		case <-failing.ch:
			px.restore(t)
		case <-t.Context().Done():
		}
		close(restored)
	}()
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, e.proj, elasticsink.RebuildConfig{
		Worker:        projections.Config{Logger: slog.New(failing), BatchSize: 50, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		ProgressEvery: 5 * time.Millisecond,
		Progress: func(p projections.RebuildProgress) {
			if p.Done > 0 && !p.Swapped {
				cutOnce.Do(px.cut)
			}
		},
	})
	<-restored
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-failing.ch:
	default:
		t.Fatal("the rebuild never saw Elasticsearch go away")
	}
	docs := e.docs(t)
	if len(docs) != n {
		t.Fatalf("%d documents after the rebuild, want %d", len(docs), n)
	}
	recs, err := e.store.ReadAll(t.Context(), es.Start, n+10)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		// The generation numbers the events from 1, in log order.
		id := fmt.Sprintf("o%d", i)
		if d, ok := docs[id]; !ok || d.Version != int64(i+1) || d.Source.Total != float64(i) {
			t.Errorf("%s = %+v, want total %d at version %d (event at %s)", id, d, i, i+1, r.Position)
		}
	}
	cp, err := e.pg.Checkpoint(t.Context(), e.proj.Name())
	if err != nil || cp.Position != last {
		t.Errorf("live checkpoint = %+v, %v; want %s", cp, err, last)
	}
}
