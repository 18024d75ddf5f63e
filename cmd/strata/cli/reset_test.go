package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// orderCount counts the orders placed: order_count(bucket, n), one row
// "all". Applying an event twice counts it twice.
type orderCount struct{}

func (orderCount) Name() string      { return "order_count" }
func (orderCount) Handles() []string { return []string{"OrderPlaced"} }
func (orderCount) Tables() []string  { return []string{"order_count"} }

func (orderCount) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("order_count").Sanitize()+` (bucket text PRIMARY KEY, n bigint NOT NULL)`)
	return err
}

func (orderCount) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("order_count").Sanitize()+` AS c (bucket, n) VALUES ('all', $1)
		ON CONFLICT (bucket) DO UPDATE SET n = c.n + excluded.n`, len(events))
	return err
}

// runCount runs order_count until its checkpoint reaches pos.
func (e *env) runCount(t *testing.T, o opts, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, "projections", "run", "order_count") }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, "order_count", pos)
	wcancel()
	cancel()
	r := <-done
	if err != nil || r.code != 0 {
		t.Fatalf("run order_count to %s: %v, exit %d\nstdout:\n%s\nstderr:\n%s", pos, err, r.code, r.stdout, r.stderr)
	}
}

func (e *env) orderCount(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := e.pool.QueryRow(t.Context(), `SELECT n FROM `+e.table("order_count")+` WHERE bucket = 'all'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) table(name string) string {
	return `"` + e.schema + `".` + name
}

func TestResetEmptiesKnownTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := opts{projections: []cli.Projection{{Projection: orderCount{}}}}
	res := e.place(t, 1, 2, 3)
	e.runCount(t, o, res.Position)
	if n := e.orderCount(t); n != 3 {
		t.Fatalf("order_count is %d before the reset, want 3", n)
	}
	e.mustRun(t, o, "projections", "reset", "order_count").check(t, 0,
		"reset order_count: checkpoint "+res.Position.String()+" -> 0:0; emptied order_count (1 rows); its worker builds them again from the start of the log")
	e.runCount(t, o, res.Position)
	if n := e.orderCount(t); n != 3 {
		t.Errorf("order_count is %d after the reset and replay, want 3", n)
	}
}

func TestResetBackToAPositionNeedsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := opts{projections: []cli.Projection{{Projection: orderCount{}}}}
	mid := e.place(t, 1)
	res := e.place(t, 2, 3)
	e.runCount(t, o, res.Position)

	r := e.cli(t.Context(), o, "projections", "reset", "order_count", "--to", mid.Position.String())
	r.check(t, cli.ExitFailed, "not resetting order_count from "+res.Position.String()+" back to "+mid.Position.String(),
		"would be applied a second time", "--idempotent", "projections rebuild order_count")
	if lines := strings.Count(r.stderr.String(), "\n"); lines != 1 {
		t.Errorf("the refusal takes %d lines, want 1:\n%s", lines, r.stderr)
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "order_count"); err != nil || cp.Position != res.Position {
		t.Errorf("checkpoint %s, %v after the refusal; want %s", cp.Position, err, res.Position)
	}
	if n := e.orderCount(t); n != 3 {
		t.Errorf("order_count is %d after the refusal, want 3", n)
	}

	r = e.mustRun(t, o, "projections", "reset", "order_count", "--to", mid.Position.String(), "--idempotent", "-o", "json")
	r.check(t, 0, `"to": "`+mid.Position.String()+`"`)
	if cp, err := e.sink.Checkpoint(t.Context(), "order_count"); err != nil || cp.Position != mid.Position {
		t.Errorf("checkpoint %s, %v after reset --idempotent; want %s", cp.Position, err, mid.Position)
	}
	if n := e.orderCount(t); n != 3 {
		t.Errorf("order_count is %d after reset --idempotent, want 3 (rows are kept)", n)
	}
}

// A process manager's log follower is never reset: it would decide again
// and send its commands again.
func TestResetRefusesProcessManager(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := pgprocess.ProjectionPrefix + "checkout"
	if err := e.sink.SetState(t.Context(), name, projections.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	r := e.cli(t.Context(), opts{}, "projections", "reset", name)
	if r.code != 1 || !strings.Contains(r.stderr.String(), "not resetting "+name) || !strings.Contains(r.stderr.String(), "send those commands again") {
		t.Errorf("reset of %s: exit %d, %s; want 1 and why not", name, r.code, r.stderr)
	}
}
