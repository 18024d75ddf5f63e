package pgsink_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// leaseLog counts, per projection, the "lease taken" and "lease lost" that
// workers log, and signals every change.
type leaseLog struct {
	mu      sync.Mutex
	counts  map[string]leaseCounts
	changed chan struct{}
}

type leaseCounts struct {
	taken, lost int
	retaken     int // taken after it was lost
	standby     int // standing by: another worker holds it
}

func newLeaseLog() *leaseLog {
	return &leaseLog{counts: map[string]leaseCounts{}, changed: make(chan struct{}, 1)}
}

func (l *leaseLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *leaseLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *leaseLog) WithGroup(string) slog.Handler            { return l }

func (l *leaseLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "projections: lease taken", "projections: lease lost", "projections: another worker holds the lease; standing by":
	default:
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "projection" {
			return true
		}
		l.mu.Lock()
		c := l.counts[a.Value.String()]
		switch r.Message {
		case "projections: lease lost":
			c.lost++
		case "projections: lease taken":
			if c.taken++; c.lost > 0 {
				c.retaken++
			}
		default:
			c.standby++
		}
		l.counts[a.Value.String()] = c
		l.mu.Unlock()
		select {
		case l.changed <- struct{}{}:
		default:
		}
		return false
	})
	return nil
}

// waitEach waits until the counts of every one of names are at least want,
// failing the test after 20s.
func (l *leaseLog) waitEach(t *testing.T, names []string, want leaseCounts) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		missing := ""
		for _, n := range names {
			if c := l.counts[n]; c.taken < want.taken || c.lost < want.lost || c.retaken < want.retaken || c.standby < want.standby {
				missing = fmt.Sprintf("%s: %+v", n, c)
				break
			}
		}
		l.mu.Unlock()
		if missing == "" {
			return
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("lease log of %s; want at least %+v for each projection", missing, want)
		}
	}
}

// A process running 20 projections on one sink holds one lease connection
// besides the pool and its listening connection; when that connection
// ends, every worker loses its lease, takes it again on a new one and goes
// on.
func TestManyWorkersShareOneLeaseConnection(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	sink, leaseApp, connects := e.leaseSink(t)
	listenerApp := strings.TrimSuffix(leaseApp, " leases") + " listener"
	first := e.appendOne(t, "s", "ItemAdded", `{"sku":"a","qty":1}`).Position

	log := newLeaseLog()
	cfg := projections.Config{Logger: slog.New(log), PollInterval: 20 * time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var names []string
	var dones []<-chan error
	for i := range 20 {
		name := fmt.Sprintf("c%02d", i)
		names = append(names, name)
		dones = append(dones, start(ctx, pgsink.NewWorker(e.store, e.reg, sink, counter{name: name}, cfg)))
	}
	waitAll := func(pos es.Position) {
		t.Helper()
		for _, name := range names {
			e.waitFor(t, name, pos)
		}
	}
	waitAll(first)
	log.waitEach(t, names, leaseCounts{taken: 1})
	pgtest.WaitForSessions(t, leaseApp, 1)
	pgtest.WaitForSessions(t, listenerApp, 1)
	pid := holder(t, sink, names[0])
	for _, name := range names[1:] {
		if got := holder(t, sink, name); got != pid {
			t.Errorf("LeaseHolder(%s) = %d; want %d, the one lease connection", name, got, pid)
		}
	}

	pgtest.TerminateSessions(t, leaseApp)
	log.waitEach(t, names, leaseCounts{lost: 1, retaken: 1})
	second := e.appendOne(t, "s", "ItemAdded", `{"sku":"a","qty":2}`).Position
	waitAll(second)
	pgtest.WaitForSessions(t, leaseApp, 1)
	newPID := holder(t, sink, names[0])
	if newPID == pid {
		t.Errorf("LeaseHolder(%s) = %d after the lease connection was terminated; want a new one", names[0], newPID)
	}
	for _, name := range names[1:] {
		if got := holder(t, sink, name); got != newPID {
			t.Errorf("LeaseHolder(%s) = %d after the termination; want %d, the one new lease connection", name, got, newPID)
		}
	}
	if got := connects.Load(); got != 2 {
		t.Errorf("%d lease connections opened; want 2: one before the termination and one after", got)
	}

	cancel()
	for _, d := range dones {
		if err := waitDone(t, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		if once, more := e.counts(t, name); once != 2 || more != 0 {
			t.Errorf("%s applied %d events once and %d more than once; want 2 and 0", name, once, more)
		}
	}
	// A sink that holds no lease holds no connection.
	pgtest.WaitForSessions(t, leaseApp, 0)
}

// Two workers of one projection on one sink take turns: the sink refuses
// the second the lease it holds for the first, which the lease
// connection's session alone would grant again.
func TestWorkersOfOneSinkTakeTurns(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	pos := e.appendOne(t, "s", "ItemAdded", `{"sku":"a","qty":1}`).Position
	log := newLeaseLog()
	cfg := projections.Config{Logger: slog.New(log), PollInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var dones []<-chan error
	for range 2 {
		dones = append(dones, start(ctx, pgsink.NewWorker(e.store, e.reg, e.sink, counter{name: "c"}, cfg)))
	}
	e.waitFor(t, "c", pos)
	log.waitEach(t, []string{"c"}, leaseCounts{taken: 1, standby: 1})
	cancel()
	for _, d := range dones {
		if err := waitDone(t, d); err != nil {
			t.Fatal(err)
		}
	}
	log.mu.Lock()
	got := log.counts["c"]
	log.mu.Unlock()
	if want := (leaseCounts{taken: 1, standby: 1}); got != want {
		t.Errorf("lease log %+v; want %+v: one worker holds the lease, the other stands by", got, want)
	}
}
