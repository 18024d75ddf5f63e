package cli_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stratadev/strata/cmd/strata/cli"
)

func TestRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{}
	o := opts{projections: []cli.Projection{{Projection: v}}, tty: true}
	res := e.place(t, 1, 2, 3)
	e.runUntil(t, o, res.Position)
	e.waitVisible(t, res.Position)
	e.exec(t, `UPDATE {{schema}}.order_view SET total = 0`) // the rebuild repairs this

	r := e.mustRun(t, o, "projections", "rebuild", "order_view", "--progress-interval", "1ms")
	out := r.stdout.String()
	if !strings.Contains(out, "\r\x1b[Korder_view [==============================] 100%") ||
		!strings.Contains(out, "\nswapped: order_view now serves the new generation (") {
		t.Errorf("rebuild on a terminal printed %q", out)
	}
	var sum int
	if err := e.pool.QueryRow(t.Context(), `SELECT sum(total) FROM `+e.schema+`.order_view`).Scan(&sum); err != nil || sum != 6 {
		t.Errorf("sum of totals after the rebuild: %d, %v; want 6", sum, err)
	}

	// Log lines on the same terminal do not land on the bar's line: it is
	// cleared before each and drawn again after.
	term := newBuffer()
	r = e.mustRun(t, opts{projections: o.projections, tty: true, stdout: term, stderr: term},
		"projections", "rebuild", "order_view", "--verbose", "--progress-interval", "1ms")
	out = term.String()
	if !strings.Contains(out, "\r\x1b[Ktime=") || !strings.Contains(out, "pgsink: rebuild swapped in") {
		t.Errorf("a verbose rebuild on a terminal printed no log line after clearing the bar: %q", out)
	}
	for _, line := range strings.Split(out, "\n") {
		for _, seg := range strings.Split(line, "\r\x1b[K") {
			if strings.Contains(seg, "ETA") && strings.Contains(seg, "level=") {
				t.Errorf("a log line shares the bar's line: %q", seg)
			}
		}
	}

	// Not a terminal: plain lines.
	o.tty = false
	r = e.mustRun(t, o, "projections", "rebuild", "order_view")
	if out := r.stdout.String(); strings.Contains(out, "\r") || !strings.Contains(out, "order_view: 3/3 events (100%), ") {
		t.Errorf("rebuild, piped, printed %q", out)
	}

	// Projections that are not registered, or not rebuildable.
	e.cli(t.Context(), opts{}, "projections", "rebuild", "order_view").check(t, cli.ExitUsage, "this binary has no projections registered")
	e.cli(t.Context(), opts{projections: []cli.Projection{{Projection: plain{v}}}}, "projections", "rebuild", "order_view").
		check(t, cli.ExitUsage, `projection "order_view" cannot be rebuilt`)
}

// plain hides the Rebuildable methods of a projection.
type plain struct{ *orderView }

func (plain) Tables() {}

// TestRebuildRunningElsewhere: a second rebuild reports the first and its
// progress and does not start; with --wait it follows the first until the
// swap.
func TestRebuildRunningElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	open := sync.OnceFunc(func() { close(v.gate) })
	t.Cleanup(open) // let a rebuild a failed test left behind finish
	o := opts{projections: []cli.Projection{{Projection: v}}}
	e.waitVisible(t, e.place(t, 1, 2, 3).Position)

	first := make(chan run)
	go func() { first <- e.cli(t.Context(), o, "projections", "rebuild", "order_view") }()
	<-v.entered // the first rebuild is applying a batch

	e.cli(t.Context(), o, "projections", "rebuild", "order_view").check(t, cli.ExitFailed,
		"strata: a rebuild of order_view is already running: 0 of ", "not starting another (--wait follows it)")
	e.mustRun(t, opts{tty: true}, "projections", "status", "order_view", "--sample", "0").check(t, 0,
		"state         running+rebuilding", "rebuild       0 of ")

	out := newBuffer()
	second := make(chan run)
	go func() {
		second <- e.cli(t.Context(), opts{projections: o.projections, stdout: out}, "projections", "rebuild", "order_view", "--wait", "--progress-interval", "5ms")
	}()
	out.waitFor(t, "following it")
	open()
	(<-first).check(t, 0, "swapped: order_view")
	(<-second).check(t, 0, "swapped: order_view now serves the new generation")
	if n := e.count(t, "order_view"); n != 3 {
		t.Errorf("order_view has %d rows, want 3", n)
	}
}

// TestRebuildInterrupted: Ctrl-C stops a rebuild cleanly and the next one
// resumes it.
func TestRebuildInterrupted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	open := sync.OnceFunc(func() { close(v.gate) })
	t.Cleanup(open) // let a rebuild a failed test left behind finish
	o := opts{projections: []cli.Projection{{Projection: v}}}
	e.waitVisible(t, e.place(t, 1, 2, 3).Position)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan run)
	go func() { done <- e.cli(ctx, o, "projections", "rebuild", "order_view") }()
	<-v.entered
	cancel() // as SIGINT does; the batch in flight finishes
	open()
	(<-done).check(t, 0, "stopped the rebuild of order_view at ", "run 'strata projections rebuild order_view' again to resume")
	if _, ok, err := e.sink.RebuildStatus(t.Context(), "order_view"); err != nil || !ok {
		t.Fatalf("no rebuild in progress after the interruption: %v", err)
	}

	e.mustRun(t, o, "projections", "rebuild", "order_view").check(t, 0,
		"resuming the rebuild of order_view at ", "swapped: order_view now serves the new generation")
	if n := e.count(t, "order_view"); n != 3 {
		t.Errorf("order_view has %d rows, want 3", n)
	}
}

// TestRebuildStalls: a rebuild that stalls says where; rebuilding again
// with --on-error dead-letter resumes it and parks the event.
func TestRebuildStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := &orderView{reject: true}
	o := opts{projections: []cli.Projection{{Projection: v}}}
	e.waitVisible(t, e.place(t, 1, -5, 2).Position)

	e.cli(t.Context(), o, "projections", "rebuild", "order_view").check(t, cli.ExitFailed,
		"strata: the rebuild of order_view stalled at event order-o-5@1", "or rebuild with --on-error dead-letter")
	e.mustRun(t, o, "projections", "rebuild", "order_view", "--on-error", "dead-letter").check(t, 0,
		"resuming the rebuild of order_view at ", "swapped: order_view")
	if n := e.count(t, "order_view"); n != 2 {
		t.Errorf("order_view has %d rows, want 2", n)
	}
	// What the new generation parked is the projection's after the swap.
	e.mustRun(t, opts{}, "projections", "dead-letters", "list", "order_view").check(t, 0, "order_view\t", "negative total -5")
	e.mustRun(t, opts{tty: true}, "projections", "status", "order_view", "--sample", "0").check(t, 0, "dead letters  1\n")
	if r := e.mustRun(t, opts{}, "projections", "list"); strings.Contains(r.stdout.String(), "#rebuild") {
		t.Errorf("projections list shows a rebuild checkpoint:\n%s", r.stdout)
	}
}
