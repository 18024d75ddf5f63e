package pgprocess_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// seen dispatches cmd and waits until the process has seen its events.
func (e env) seen(t *testing.T, cmd any) {
	t.Helper()
	res, err := e.bus.Dispatch(t.Context(), cmd)
	if err != nil {
		t.Fatalf("dispatch %T: %v", cmd, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, e.sink, pgprocess.ProjectionPrefix+"checkout", res.Position); err != nil {
		t.Fatalf("wait for the process to see %T: %v", cmd, err)
	}
}

// run runs r until the returned function is called, which waits for Run
// to return.
func run(t *testing.T, r *pgprocess.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func ids(list []pgprocess.Instance) []string {
	out := []string{}
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}

func (e env) list(t *testing.T, f pgprocess.ListFilter) []string {
	t.Helper()
	list, err := pgprocess.ListInstances(t.Context(), e.sink, "checkout", f)
	if err != nil {
		t.Fatal(err)
	}
	return ids(list)
}

// A pending command is stuck once it has failed StuckRule.Attempts times,
// not before; the instance shows it with its attempts and error.
func TestStuckAfterAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The middleware holds attempt n until the test has looked: by then
	// the outcome of attempt n-1 is committed.
	hold := map[int]chan struct{}{5: make(chan struct{}), 6: make(chan struct{})}
	held := map[int]chan struct{}{5: make(chan struct{}), 6: make(chan struct{})}
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		n := 0
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if _, ok := cmd.(CapturePayment); ok {
				n++
				if h, ok := hold[n]; ok {
					close(held[n])
					select {
					case <-h:
					case <-ctx.Done():
					}
				}
				return cqrs.Result{}, errors.New("gateway unavailable")
			}
			return next(ctx, cmd)
		}
	})
	start(t, e.runner(pgprocess.Config{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}))
	defer close(hold[6])
	e.place(t, PlaceOrder{OrderID: "s", Amount: 1})

	<-held[5] // 4 failed attempts committed
	in := e.instance(t, "s")
	if in.Stuck != "" || len(in.Commands) != 1 || in.Commands[0].Attempts != 4 {
		t.Errorf("after 4 attempts: stuck %q, commands %+v; want not stuck, 1 command with 4 attempts", in.Stuck, in.Commands)
	}
	if got := e.list(t, pgprocess.ListFilter{Status: pgprocess.StatusStuck}); len(got) != 0 {
		t.Errorf("stuck instances after 4 attempts: %v; want none", got)
	}
	close(hold[5])

	<-held[6] // 5 failed attempts committed
	in = e.instance(t, "s")
	want := "command " + cqrs.CommandName(CapturePayment{}) + " failed 5 times: gateway unavailable"
	if in.Stuck != want {
		t.Errorf("after 5 attempts: stuck %q; want %q", in.Stuck, want)
	}
	if len(in.Commands) != 1 {
		t.Fatalf("commands: %+v; want 1", in.Commands)
	}
	c := in.Commands[0]
	if c.Status != pgprocess.CommandPending || c.Attempts != 5 || c.LastError != "gateway unavailable" ||
		c.ID != "checkout/s/1/0" || c.DispatchedAt != nil || c.NextAttemptAt.IsZero() {
		t.Errorf("command is %+v; want pending, 5 attempts, the gateway's error, ID checkout/s/1/0, not dispatched", c)
	}
	if got := e.list(t, pgprocess.ListFilter{Status: pgprocess.StatusStuck}); !slices.Equal(got, []string{"s"}) {
		t.Errorf("stuck instances: %v; want [s]", got)
	}
	if got := e.list(t, pgprocess.ListFilter{Status: pgprocess.StatusStuck, Stuck: pgprocess.StuckRule{Attempts: 6}}); len(got) != 0 {
		t.Errorf("stuck instances with Attempts 6: %v; want none", got)
	}
	st, err := pgprocess.ReadStats(t.Context(), e.sink, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	if st.Stuck != 1 || st.Running != 1 {
		t.Errorf("stats are %+v; want 1 stuck of 1 running", st)
	}
}

// A pending deadline is stuck once it is overdue by more than the grace,
// on the database's clock: no runner fires it.
func TestStuckOverdueDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := run(t, e.runner(pgprocess.Config{}))
	e.seen(t, PlaceOrder{OrderID: "late", Manual: true, PayWithin: time.Hour})
	stop() // nobody fires deadlines from here on

	overdue := func(by string) {
		t.Helper()
		if _, err := e.pool.Exec(t.Context(), `UPDATE `+ident(e, "process_deadlines")+
			` SET due_at = now() - $1::interval WHERE id = 'late'`, by); err != nil {
			t.Fatal(err)
		}
	}
	overdue("30 seconds")
	in := e.instance(t, "late")
	if in.Stuck != "" {
		t.Errorf("30s overdue: stuck %q; want not stuck within the default grace of 1m", in.Stuck)
	}
	list, err := pgprocess.ListInstances(t.Context(), e.sink, "checkout",
		pgprocess.ListFilter{Status: pgprocess.StatusStuck, Stuck: pgprocess.StuckRule{Grace: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !strings.HasPrefix(list[0].Stuck, "deadline payment overdue since ") {
		t.Errorf("stuck with a grace of 10s: %+v; want late, its deadline overdue", list)
	}

	overdue("2 minutes")
	in = e.instance(t, "late")
	if len(in.Deadlines) != 1 {
		t.Fatalf("deadlines: %+v; want 1", in.Deadlines)
	}
	d := in.Deadlines[0]
	wantStuck := "deadline payment overdue since " + d.DueAt.UTC().Format("2006-01-02T15:04:05Z")
	if in.Stuck != wantStuck {
		t.Errorf("2m overdue: stuck %q; want %q", in.Stuck, wantStuck)
	}
	if d.Name != "payment" || d.Status != pgprocess.DeadlinePending || d.Step != 1 || d.ClosedAt != nil {
		t.Errorf("deadline is %+v; want payment, pending, set at step 1", d)
	}
	st, err := pgprocess.ReadStats(t.Context(), e.sink, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	if st.Stuck != 1 || st.OverdueDeadlines != 1 {
		t.Errorf("stats are %+v; want 1 stuck, 1 overdue deadline", st)
	}
}

// A failed instance (its state no longer decodes) is stuck with its error.
func TestStuckFailedInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start(t, e.runner(pgprocess.Config{}))
	e.seen(t, PlaceOrder{OrderID: "broken", Manual: true})
	if _, err := e.pool.Exec(t.Context(), `UPDATE `+ident(e, "process_instances")+` SET state = '{"Amount": "many"}' WHERE id = 'broken'`); err != nil {
		t.Fatal(err)
	}
	e.seen(t, CapturePayment{OrderID: "broken", Amount: 1})
	in := e.instance(t, "broken")
	if in.Status != pgprocess.StatusFailed || !strings.HasPrefix(in.Stuck, "failed: ") || !strings.Contains(in.Stuck, "decode state") {
		t.Errorf("broken instance: status %q, stuck %q; want failed, stuck with the decode error", in.Status, in.Stuck)
	}
	for _, status := range []string{pgprocess.StatusFailed, pgprocess.StatusStuck} {
		if got := e.list(t, pgprocess.ListFilter{Status: status}); !slices.Equal(got, []string{"broken"}) {
			t.Errorf("%s instances: %v; want [broken]", status, got)
		}
	}
	if got := e.list(t, pgprocess.ListFilter{Status: pgprocess.StatusRunning}); len(got) != 0 {
		t.Errorf("running instances: %v; want none", got)
	}
}

// A rejection that the instance handled (it compensated) is not stuck; one
// that came after the instance had completed is, with the rejection.
func TestStuckUnhandledRejection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	entered, release := make(chan string, 2), make(chan struct{})
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if c, ok := cmd.(CapturePayment); ok && c.OrderID == "late" {
				entered <- c.OrderID
				select {
				case <-release:
				case <-ctx.Done():
					return cqrs.Result{}, ctx.Err()
				}
			}
			return next(ctx, cmd)
		}
	})
	start(t, e.runner(pgprocess.Config{}))

	e.place(t, PlaceOrder{OrderID: "declined", Amount: 500})
	e.waitForEnd(t, "declined")
	in := e.instance(t, "declined")
	if in.Stuck != "" || len(in.Commands) != 2 || in.Commands[0].Status != pgprocess.CommandRejected ||
		in.Commands[0].HandledStep != 2 || !strings.Contains(in.Commands[0].LastError, errDeclined.Error()) {
		t.Errorf("compensated instance: stuck %q, commands %+v; want not stuck, the capture rejected (declined) and handled at step 2",
			in.Stuck, in.Commands)
	}

	e.place(t, PlaceOrder{OrderID: "late", Amount: 500})
	<-entered
	// The process completes meanwhile, before the payment's rejection
	// comes back. It is set directly: the dispatch's transaction holds
	// back the readers of the log, so the follower could not see an event
	// that completes it before the dispatch ends.
	if _, err := e.pool.Exec(t.Context(), `UPDATE `+ident(e, "process_instances")+` SET status = 'completed' WHERE id = 'late'`); err != nil {
		t.Fatal(err)
	}
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for { // the outcome of a dispatch sends no signal: look until it is recorded
		in = e.instance(t, "late")
		if len(in.Commands) == 1 && in.Commands[0].Status == pgprocess.CommandRejected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the capture of order late was not rejected within 30s: %+v", in.Commands)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := "command " + cqrs.CommandName(CapturePayment{}) + " was rejected and no decision handled it: "
	if in.Status != pgprocess.StatusCompleted || !strings.HasPrefix(in.Stuck, want) || !strings.Contains(in.Stuck, errDeclined.Error()) ||
		in.Commands[0].HandledStep != 0 {
		t.Errorf("late instance: status %q, stuck %q, command %+v; want completed, stuck %q + the decline, not handled",
			in.Status, in.Stuck, in.Commands[0], want)
	}
	if got := e.list(t, pgprocess.ListFilter{Status: pgprocess.StatusStuck}); !slices.Equal(got, []string{"late"}) {
		t.Errorf("stuck instances: %v; want [late]", got)
	}
}

// ListInstances returns the newest first, of one status or all, at most
// Limit; ListProcesses names the process managers that have rows.
func TestListInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	names, err := pgprocess.ListProcesses(t.Context(), e.sink)
	if err != nil || len(names) != 0 {
		t.Errorf("ListProcesses of an empty schema: %v, %v; want none", names, err)
	}
	start(t, e.runner(pgprocess.Config{}))
	for _, id := range []string{"b", "a", "c"} {
		e.place(t, PlaceOrder{OrderID: id, Amount: 1})
		e.waitForEnd(t, id)
	}
	e.seen(t, PlaceOrder{OrderID: "open", Manual: true})
	for _, tc := range []struct {
		f    pgprocess.ListFilter
		want []string
	}{
		{pgprocess.ListFilter{}, []string{"open", "c", "a", "b"}},
		{pgprocess.ListFilter{Limit: 2}, []string{"open", "c"}},
		{pgprocess.ListFilter{Status: pgprocess.StatusCompleted}, []string{"c", "a", "b"}},
		{pgprocess.ListFilter{Status: pgprocess.StatusRunning}, []string{"open"}},
		{pgprocess.ListFilter{Status: pgprocess.StatusFailed}, []string{}},
		{pgprocess.ListFilter{Status: pgprocess.StatusStuck}, []string{}},
	} {
		if got := e.list(t, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("ListInstances(%+v) = %v; want %v", tc.f, got, tc.want)
		}
	}
	if _, err := pgprocess.ListInstances(t.Context(), e.sink, "checkout", pgprocess.ListFilter{Status: "stalled", Limit: -1}); err == nil ||
		!strings.Contains(err.Error(), "Status") || !strings.Contains(err.Error(), "Limit") {
		t.Errorf("ListInstances with a bad filter: %v; want errors about Status and Limit", err)
	}
	names, err = pgprocess.ListProcesses(t.Context(), e.sink)
	if err != nil || !slices.Equal(names, []string{"checkout"}) {
		t.Errorf("ListProcesses = %v, %v; want [checkout]", names, err)
	}
	if _, err := pgprocess.ReadInstance(t.Context(), e.sink, "checkout", "nope"); !errors.Is(err, pgprocess.ErrNotFound) {
		t.Errorf("ReadInstance of an unknown id: %v; want ErrNotFound", err)
	}
}

// Migrate brings the tables of an earlier version up to date: the column
// and the indexes that came later are added.
func TestMigrateUpgrades(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, sql := range []string{
		`DROP INDEX ` + ident(e, "process_outbox_unhandled"),
		`DROP INDEX ` + ident(e, "process_instances_created"),
		`DROP INDEX ` + ident(e, "process_instances_status"),
		`ALTER TABLE ` + ident(e, "process_outbox") + ` DROP COLUMN handled_step`,
	} {
		if _, err := e.pool.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgprocess.Migrate(t.Context(), e.sink); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.query(t, `SELECT count(*) FROM pg_catalog.pg_indexes WHERE schemaname = $1 AND indexname = ANY($2)`,
		e.sink.Schema(), []string{"process_outbox_unhandled", "process_instances_created", "process_instances_status"}).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("indexes after Migrate: %d of 3", n)
	}
	if _, err := pgprocess.ListInstances(t.Context(), e.sink, "checkout", pgprocess.ListFilter{Status: pgprocess.StatusStuck}); err != nil {
		t.Errorf("list stuck instances after Migrate: %v", err)
	}
}

// Migrate creates a read schema of its own when it is missing.
func TestMigrateCreatesReadSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reads := e.sink.Schema() + "_reads"
	t.Cleanup(func() {
		if _, err := e.pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgxIdent(reads)+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	sink := pgsink.New(e.pool, pgsink.Config{Schema: e.sink.Schema(), ReadSchema: reads, Logger: quiet})
	if err := pgprocess.Migrate(t.Context(), sink); err != nil {
		t.Fatal(err)
	}
	if _, err := pgprocess.ListProcesses(t.Context(), sink); err != nil {
		t.Errorf("list process managers in the new read schema: %v", err)
	}
}
