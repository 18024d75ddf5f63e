package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// runUntil runs `projections run args...` until the projection's
// checkpoint reaches pos, then interrupts it and returns the result.
func (e *env) runUntil(t *testing.T, o opts, pos es.Position, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, append([]string{"projections", "run"}, args...)...) }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, "order_view", pos)
	wcancel()
	cancel() // as SIGINT does
	r := <-done
	if err != nil {
		t.Fatalf("wait for order_view to reach %s: %v\nstdout:\n%s\nstderr:\n%s", pos, err, r.stdout, r.stderr)
	}
	return r
}

func TestProjectionsRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{}
	o := opts{projections: []cli.Projection{{Projection: v}}}
	res := e.place(t, 1, 2, 3)
	r := e.runUntil(t, o, res.Position)
	r.check(t, 0, "created the tables of order_view\n", "running order_view (Ctrl-C to stop)\n",
		"order_view: stopped at "+res.Position.String()+" after applying 3 events\n")
	if n := e.count(t, "order_view"); n != 3 {
		t.Errorf("order_view has %d rows, want 3", n)
	}

	// The generic binary has nothing to run.
	e.cli(t.Context(), opts{}, "projections", "run").check(t, cli.ExitUsage, "this binary has no projections registered")
	// An unknown name lists the known ones.
	e.cli(t.Context(), o, "projections", "run", "order_vew").check(t, cli.ExitUsage,
		`unknown projection "order_vew"; known projections: order_view`)
}

// startRun starts `projections run args...`; cancelling ctx interrupts
// it, as SIGINT does.
func (e *env) startRun(ctx context.Context, o opts, args ...string) <-chan run {
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, append([]string{"projections", "run"}, args...)...) }()
	return done
}

func TestProjectionsRunStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{reject: true}
	e.place(t, 1, -5, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := newBuffer()
	done := e.startRun(ctx, opts{projections: []cli.Projection{{Projection: v}}, stderr: stderr})
	// The command keeps running with its only projection stalled, until
	// interrupted; then it exits 1.
	stderr.waitFor(t, "order_view stalled at")
	cancel()
	r := <-done
	r.check(t, cli.ExitFailed, "order_view: stalled at", `order-o-5@1 (type "OrderPlaced"`, "negative total -5",
		"projections resume order_view")

	r = e.mustRun(t, opts{tty: true}, "projections", "status", "order_view", "--sample", "0")
	for _, s := range []string{"state         stalled", "lag           ", "negative total -5"} {
		if !strings.Contains(r.stdout.String(), s) {
			t.Errorf("status does not say %q:\n%s", s, r.stdout)
		}
	}
	// Skipping past the event moves the checkpoint; the projection stays
	// stalled until resumed, and reset says so.
	cp, err := e.sink.Checkpoint(t.Context(), "order_view")
	if err != nil || cp.Failure == nil {
		t.Fatalf("checkpoint %+v, %v; want a failure", cp, err)
	}
	e.mustRun(t, opts{}, "projections", "reset", "order_view", "--to", cp.Failure.Position.String()).check(t, 0,
		"its worker goes on from there", "order_view is still stalled: 'strata projections resume order_view' lets its worker go on")
	e.mustRun(t, opts{}, "projections", "resume", "order_view").check(t, 0, "a running worker starts again within a second")
}

// tablelessCount applies OrderPlaced events and keeps no tables: its
// checkpoint says how far it got.
type tablelessCount struct{}

func (tablelessCount) Name() string      { return "order_count" }
func (tablelessCount) Handles() []string { return []string{"OrderPlaced"} }
func (tablelessCount) HandleBatch(context.Context, *pgsink.Tx, []projections.Event) error {
	return nil
}

// TestProjectionsRunStallIsolated runs two projections: one stalls, the
// other keeps applying events appended after the stall; 'projections
// resume' from another command makes the running one start the stalled
// projection again, and it catches up.
func TestProjectionsRunStallIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{reject: true}
	e.place(t, 1, -5, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := newBuffer()
	done := e.startRun(ctx, opts{projections: []cli.Projection{{Projection: v}, {Projection: tablelessCount{}}}, stderr: stderr})
	stderr.waitFor(t, "order_view stalled at")

	res := e.place(t, 3, 4)
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	if err := projections.WaitFor(wctx, e.sink, "order_count", res.Position); err != nil {
		t.Fatalf("order_count after order_view stalled: %v\nstderr:\n%s", err, stderr)
	}

	v.setReject(false)
	e.mustRun(t, opts{}, "projections", "resume", "order_view")
	if err := projections.WaitFor(wctx, e.sink, "order_view", res.Position); err != nil {
		t.Fatalf("order_view after the resume: %v\nstderr:\n%s", err, stderr)
	}
	stderr.waitFor(t, "order_view: running again")
	cancel()
	r := <-done
	r.check(t, 0, "order_view: stopped at "+res.Position.String()+" after applying 5 events\n",
		"order_count: stopped at "+res.Position.String()+" after applying 5 events\n")
	if n := e.count(t, "order_view"); n != 5 {
		t.Errorf("order_view has %d rows, want 5", n)
	}
}

func TestProjectionsListAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{}
	o := opts{projections: []cli.Projection{{Projection: v}}}
	first := e.place(t, 1, 2)
	e.runUntil(t, o, first.Position)
	e.place(t, 3, 4, 5)

	r := e.mustRun(t, opts{tty: true}, "projections", "list")
	if got := r.stdout.String(); !strings.HasPrefix(got, "NAME        STATE    CHECKPOINT") ||
		!strings.Contains(got, "order_view  running  "+first.Position.String()) {
		t.Errorf("projections list:\n%s", got)
	}

	r = e.mustRun(t, opts{}, "projections", "status", "-o", "json", "--sample", "10ms")
	var sts []struct {
		Name       string
		State      string
		Checkpoint es.Position
		LagEvents  int64 `json:"lag_events"`
		Throughput *float64
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &sts); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	// Another test's open transaction may hold the head back: lag is at
	// most 3.
	if len(sts) != 1 || sts[0].Name != "order_view" || sts[0].Checkpoint != first.Position ||
		sts[0].LagEvents < 0 || sts[0].LagEvents > 3 {
		t.Errorf("status: %+v", sts)
	}

	e.cli(t.Context(), opts{}, "projections", "status", "nope").check(t, cli.ExitUsage,
		`unknown projection "nope"; known projections: order_view`)
}

// TestStatusHeldBack runs alone: its open transaction holds back every
// reader of the server's logs.
func TestStatusHeldBack(t *testing.T) {
	e := newEnv(t)
	if err := e.sink.Reset(t.Context(), "order_view", es.Start); err != nil {
		t.Fatal(err)
	}
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(t.Context()))
	if _, err := tx.Exec(t.Context(), `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	e.place(t, 1)
	// Other packages' tests may share the server, and their transactions
	// may be older than this one for a moment: look again until the
	// oldest is this idle one.
	deadline := time.Now().Add(time.Minute)
	for {
		r := e.mustRun(t, opts{tty: true}, "projections", "status", "--sample", "0")
		if strings.Contains(r.stdout.String(), "idle in transaction") || time.Now().After(deadline) {
			r.check(t, 0, "readers of the log are held at position", "by transaction", "idle in transaction", "with 1 committed event behind it")
			return
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestStatusWatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sink.Reset(t.Context(), "order_view", es.Start); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := newBuffer()
	done := make(chan run)
	go func() {
		done <- e.cli(ctx, opts{tty: true, stdout: out}, "projections", "status", "--watch", "--interval", "10ms")
	}()
	out.waitForCount(t, "\x1b[H\x1b[2J", 1)
	e.place(t, 1)
	out.waitForCount(t, "\x1b[H\x1b[2J", 3) // a frame after the append
	cancel()
	r := <-done
	r.check(t, 0, "order_view")
	if n := strings.Count(r.stdout.String(), "\x1b[H\x1b[2J"); n < 2 {
		t.Errorf("%d frames, want 2 or more", n)
	}
}

func TestPauseResumeReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.place(t, 1)
	if err := e.sink.Reset(t.Context(), "order_view", res.Position); err != nil {
		t.Fatal(err)
	}

	e.mustRun(t, opts{}, "projections", "pause", "order_view").check(t, 0,
		"paused order_view at "+res.Position.String()+" (was running)")
	cp, _ := e.sink.Checkpoint(t.Context(), "order_view")
	if cp.State != projections.StatePaused {
		t.Errorf("state %s after pause", cp.State)
	}
	e.mustRun(t, opts{}, "projections", "resume", "order_view").check(t, 0, "resumed order_view at "+res.Position.String()+" (was paused)")

	// The generic binary does not know the tables, so it would replay
	// into them.
	e.cli(t.Context(), opts{}, "projections", "reset", "order_view").check(t, cli.ExitFailed,
		"not resetting order_view from "+res.Position.String()+" to the start", "this binary does not know its tables", "--idempotent")
	if cp, _ = e.sink.Checkpoint(t.Context(), "order_view"); cp.Position != res.Position {
		t.Errorf("checkpoint after a refused reset: %+v", cp)
	}
	e.mustRun(t, opts{}, "projections", "reset", "order_view", "--idempotent").check(t, 0,
		"reset order_view: checkpoint "+res.Position.String()+" -> 0:0; its worker applies the events after it again")
	cp, _ = e.sink.Checkpoint(t.Context(), "order_view")
	if cp.Position != es.Start || cp.State != projections.StateRunning {
		t.Errorf("checkpoint after reset: %+v", cp)
	}
	// Forwards needs no assertion.
	e.mustRun(t, opts{}, "projections", "reset", "order_view", "--to", res.Position.String()).check(t, 0, "its worker goes on from there")
	if cp, _ = e.sink.Checkpoint(t.Context(), "order_view"); cp.Position != res.Position {
		t.Errorf("checkpoint after reset --to: %+v", cp)
	}

	for _, cmd := range []string{"pause", "resume", "reset"} {
		e.cli(t.Context(), opts{}, "projections", cmd, "order_veiw").check(t, cli.ExitUsage,
			`unknown projection "order_veiw"; known projections: order_view`)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{reject: true}
	o := opts{projections: []cli.Projection{{Projection: v}}}
	res := e.place(t, 1, -5, -7, 2)
	e.runUntil(t, o, res.Position, "--on-error", "dead-letter").check(t, 0, "after applying 2 events")

	// The generic binary lists and skips.
	r := e.mustRun(t, opts{}, "projections", "dead-letters", "list", "order_view")
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "\torder-o-5\t1\tOrderPlaced\t") || !strings.Contains(lines[1], "negative total -7") {
		t.Fatalf("dead-letters list:\n%s", r.stdout)
	}
	skipID := strings.Split(lines[1], "\t")[1]
	e.mustRun(t, opts{}, "projections", "dead-letters", "skip", "order_view", skipID).check(t, 0,
		"skipped order-o-7@1", "order_view: 1 dead letter(s) skipped")
	e.cli(t.Context(), opts{}, "projections", "dead-letters", "skip", "order_view", skipID).check(t, cli.ExitFailed,
		"order_view has no dead letter with event ID "+skipID)

	// Retry fails while the handler still refuses the event, and the event
	// stays parked; then it succeeds.
	e.cli(t.Context(), o, "projections", "dead-letters", "retry", "order_view", "--all").check(t, cli.ExitFailed,
		"failed again; it stays parked", "negative total -5")
	e.cli(t.Context(), opts{}, "projections", "dead-letters", "retry", "order_view", "--all").check(t, cli.ExitUsage,
		"this binary has no projections registered")
	v.setReject(false)
	e.mustRun(t, o, "projections", "dead-letters", "retry", "order_view", "--all").check(t, 0,
		"retried order-o-5@1", "order_view: 1 dead letter(s) retried")
	if n := e.count(t, "order_view"); n != 3 {
		t.Errorf("order_view has %d rows, want 3", n)
	}
	r = e.mustRun(t, opts{}, "projections", "dead-letters", "list", "-o", "json")
	if strings.TrimSpace(r.stdout.String()) != "[]" {
		t.Errorf("dead letters left: %s", r.stdout)
	}
}
