package pgsink_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// counter counts, per projection, how often each event was applied, in a
// table of its own so that several counters share an env.
type counter struct {
	name string
	// fail, when set, fails the handler for events it returns true for.
	fail func(projections.Event) bool
}

func (p counter) Name() string      { return p.name }
func (p counter) Handles() []string { return []string{"ItemAdded"} }

func (p counter) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		if p.fail != nil && p.fail(ev) {
			return fmt.Errorf("refusing %s@%d", ev.Record.Stream, ev.Record.Version)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("counts").Sanitize()+` AS c (projection, event_id, n)
			VALUES ($1, $2, 1) ON CONFLICT (projection, event_id) DO UPDATE SET n = c.n + 1`,
			p.name, ev.Record.ID); err != nil {
			return err
		}
	}
	return nil
}

func newCounterEnv(t *testing.T) env {
	t.Helper()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.counts (projection text, event_id uuid, n int NOT NULL, PRIMARY KEY (projection, event_id))`)
	return e
}

// counts returns how many events projection applied once, and how many
// more than once.
func (e env) counts(t *testing.T, projection string) (once, more int) {
	t.Helper()
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT
		count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n > 1)
		FROM {{schema}}.counts WHERE projection = $1`, e.sink.Schema()), projection).Scan(&once, &more); err != nil {
		t.Fatal(err)
	}
	return once, more
}

// statusLog collects what a runner's OnChange reports.
type statusLog struct {
	mu      sync.Mutex
	seen    []projections.WorkerStatus
	changed chan struct{}
}

func newStatusLog() *statusLog { return &statusLog{changed: make(chan struct{}, 1)} }

func (l *statusLog) add(s projections.WorkerStatus) {
	l.mu.Lock()
	l.seen = append(l.seen, s)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// wait returns the first status of name in state reported after the
// first n reports, and how many reports there were up to it.
func (l *statusLog) wait(t *testing.T, n int, name string, state projections.WorkerState) (projections.WorkerStatus, int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		seen := l.seen
		l.mu.Unlock()
		for i := n; i < len(seen); i++ {
			if seen[i].Name == name && seen[i].State == state {
				return seen[i], i + 1
			}
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("%s did not become %s; reports: %v", name, state, seen)
		}
	}
}

// runRunner runs r until the test ends.
func runRunner(t *testing.T, r *projections.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := waitDone(t, done); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// TestRunnerStallIsolated runs two projections in one runner: one stalls
// on an event it cannot handle, the other goes on applying events appended
// after the stall; the runner reports the stall; once the cause is fixed
// and the projection resumed, the runner starts its worker again and it
// catches up.
func TestRunnerStallIsolated(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	e.importEvents(t, 20)
	poison := e.appendOne(t, "poison", "ItemAdded", `{"sku":"p","qty":1}`)
	var healed atomic.Bool
	bad := counter{name: "bad", fail: func(ev projections.Event) bool {
		return !healed.Load() && ev.Record.Stream == "poison"
	}}
	cfg := projections.Config{Logger: quiet}
	log := newStatusLog()
	r := projections.NewRunner(projections.RunnerConfig{Logger: quiet, OnChange: log.add})
	r.Add(projections.NewWorker(e.store, e.reg, e.sink, bad, cfg),
		projections.NewWorker(e.store, e.reg, e.sink, counter{name: "good"}, cfg))
	runRunner(t, r)

	_, n := log.wait(t, 0, "bad", projections.WorkerStalled)
	later := e.appendOne(t, "later", "ItemAdded", `{"sku":"x","qty":7}`)
	e.waitFor(t, "good", later.Position)

	wantHealth := fmt.Sprintf(`degraded: bad stalled at %s: event poison@%d (type "ItemAdded"): refusing poison@%d`,
		poison.Position, poison.Version, poison.Version)
	if got := r.Health().String(); got != wantHealth {
		t.Errorf("Health() = %q, want %q", got, wantHealth)
	}
	if r.Health().OK() {
		t.Error("Health().OK() = true with a stalled projection")
	}
	var states []string
	for _, s := range r.Statuses() {
		states = append(states, s.Name+"="+string(s.State))
	}
	if want := "[bad=stalled good=running]"; fmt.Sprint(states) != want {
		t.Errorf("Statuses() = %v, want %v", states, want)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "bad")
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Position.Before(poison.Position) || cp.State != projections.StateStalled {
		t.Errorf("checkpoint of bad at %s, %s; want before %s, stalled", cp.Position, cp.State, poison.Position)
	}

	// Fix the cause and resume: the runner starts the worker again.
	healed.Store(true)
	if err := projections.Resume(t.Context(), e.sink, "bad"); err != nil {
		t.Fatal(err)
	}
	log.wait(t, n, "bad", projections.WorkerStarting)
	e.waitFor(t, "bad", later.Position)
	if h := r.Health(); !h.OK() || h.String() != "ok" {
		t.Errorf("Health() after the resume = %q, want ok", h)
	}
	for _, name := range []string{"bad", "good"} {
		if once, more := e.counts(t, name); once != 22 || more != 0 {
			t.Errorf("%s applied %d events once and %d more than once, want 22 and 0", name, once, more)
		}
	}
}

// TestRunnerStartsWithStalled starts a runner while one of its projections
// is stalled already: the others start and apply events.
func TestRunnerStartsWithStalled(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	f := projections.Failure{Stream: "x", Version: 3, Position: es.Position{Commit: 1, Prepare: 1}, Type: "ItemAdded", Error: "boom"}
	if err := e.sink.SetState(t.Context(), "bad", projections.StateStalled, &f); err != nil {
		t.Fatal(err)
	}
	head := e.importEvents(t, 30)
	cfg := projections.Config{Logger: quiet}
	log := newStatusLog()
	r := projections.NewRunner(projections.RunnerConfig{Logger: quiet, OnChange: log.add})
	r.Add(projections.NewWorker(e.store, e.reg, e.sink, counter{name: "bad"}, cfg),
		projections.NewWorker(e.store, e.reg, e.sink, counter{name: "good"}, cfg))
	runRunner(t, r)

	e.waitFor(t, "good", head)
	st, _ := log.wait(t, 0, "bad", projections.WorkerStalled)
	want := `bad stalled at 1:1: event x@3 (type "ItemAdded"): boom`
	if st.String() != want {
		t.Errorf("status of bad = %q, want %q", st, want)
	}
	if got := r.Health().String(); got != "degraded: "+want {
		t.Errorf("Health() = %q, want %q", got, "degraded: "+want)
	}
	if once, _ := e.counts(t, "bad"); once != 0 {
		t.Errorf("stalled bad applied %d events, want 0", once)
	}
}

// TestResetWhileIdle resets the checkpoint of a running worker that has
// nothing to do: the worker notices without any new event and applies the
// events again. PollInterval is long, so only the sink's signal can wake it.
func TestResetWhileIdle(t *testing.T) {
	t.Parallel()
	e := newCounterEnv(t)
	head := e.importEvents(t, 25)
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(e.store, e.reg, e.sink, counter{name: "c"}, projections.Config{Logger: quiet, PollInterval: time.Hour})
	done := start(ctx, w)
	e.waitFor(t, "c", head)
	if err := e.sink.Reset(t.Context(), "c", es.Start); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "c", head)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if once, more := e.counts(t, "c"); once != 0 || more != 25 {
		t.Errorf("applied %d events once and %d more than once, want 0 and 25", once, more)
	}
	if w.Applied() != 50 {
		t.Errorf("Applied() = %d, want 50", w.Applied())
	}
}
