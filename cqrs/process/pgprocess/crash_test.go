package pgprocess_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/childproc"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
)

// envCrashSchema, when set, makes the test binary a runner process on that
// schema that runs until it is killed (see TestKilledRunners).
const envCrashSchema = "PGPROCESS_TEST_CRASH_SCHEMA"

// runUntilKilled is the runner process: it runs the checkout process on
// the schema named by envCrashSchema, says so on standard output, and runs
// until it is killed.
func runUntilKilled() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := pgxpool.ParseConfig(os.Getenv(pgtest.EnvURL))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	e := openEnv(fatalTB{}, pool, os.Getenv(envCrashSchema))
	// Die now and then right after a command was applied, before its
	// outbox row is marked dispatched: the crash that would apply it twice
	// if its ID were not derived from the process.
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			res, err := next(ctx, cmd)
			if _, ok := cmd.(PlaceOrder); !ok && err == nil && rand.IntN(20) == 0 {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			return res, err
		}
	})
	r := e.runner(pgprocess.Config{Dispatchers: 2})
	fmt.Printf(childproc.ReadyPrefix+"as pid %d\n", os.Getpid())
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fatalTB lets openEnv run outside a test: a failure ends the process.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper() {}
func (fatalTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}

// startChild starts a runner process and waits until it runs.
func startChild(schema string) (*exec.Cmd, error) {
	return childproc.Start("a runner process", envCrashSchema+"="+schema)
}

// Two runner processes compete while orders flow, and are killed with
// SIGKILL, one after the other, many times. At the end every order ended
// as its payment said, no command was applied twice (each stream holds the
// events of one run of the process) and every instance completed.
func TestKilledRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	t.Parallel()
	e := newEnv(t)
	const (
		orders = 150
		kills  = 12
	)
	// Count the log's events as they come, to kill while events flow.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	slots := []*childproc.Slot{{}, {}}
	started := make(chan error, 100)
	var running sync.WaitGroup
	for _, s := range slots {
		running.Add(1)
		go func() {
			defer running.Done()
			s.Run(ctx, func() (*exec.Cmd, error) { return startChild(e.sink.Schema()) }, started)
		}()
	}
	t.Cleanup(func() {
		cancel()
		for _, s := range slots {
			s.Kill()
		}
		running.Wait()
	})
	starts := 0
	for range slots {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		starts++
	}
	seen := make(chan int, 1)
	counted := make(chan struct{})
	t.Cleanup(func() { <-counted })
	go func() {
		defer close(counted)
		n := 0
		for recs, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
			if err != nil {
				return
			}
			n += len(recs)
			select {
			case <-seen:
			default:
			}
			seen <- n
		}
	}()
	want := map[string][]string{}
	go func() {
		for i := range orders {
			id := fmt.Sprintf("o%d", i)
			o := PlaceOrder{OrderID: id, Amount: 10}
			switch i % 3 {
			case 1:
				o.Amount = 500 // declined
			case 2:
				o.Manual, o.PayWithin = true, 50*time.Millisecond // times out
			}
			if _, err := e.bus.Dispatch(ctx, o); err != nil {
				t.Errorf("place %s: %v", id, err)
				return
			}
		}
	}()
	for i := range orders {
		id := fmt.Sprintf("o%d", i)
		want[id] = []string{"OrderPlaced", "OrderConfirmed"}
		if i%3 != 0 {
			want[id] = []string{"OrderPlaced", "OrderCancelled"}
		}
	}

	last := 0
	for k := range kills {
		for n := last; n < last+15; {
			select {
			case n = <-seen:
			case <-ctx.Done():
				t.Fatalf("kill %d: the log did not grow past %d events", k, last)
			}
		}
		last += 15
		slots[k%2].Kill()
	}

	end := e.waitForAll(t, ctx, want)
	if err := projections.WaitFor(ctx, e.sink, pgprocess.ProjectionPrefix+"checkout", end); err != nil {
		t.Fatal(err)
	}
	for len(started) > 0 {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		starts++
	}
	t.Logf("runner processes started: %d, for %d kills from outside", starts, kills)
	for id, w := range want {
		if got := e.types(t, "order-"+id); !slices.Equal(got, w) {
			t.Errorf("order %s: stream is %v; want %v", id, got, w)
		}
		payments := e.types(t, "payment-"+id)
		if paid := slices.Equal(w, []string{"OrderPlaced", "OrderConfirmed"}); (paid && len(payments) != 1) || (!paid && len(payments) != 0) {
			t.Errorf("order %s: payment stream is %v; want one capture for a confirmed order, none otherwise", id, payments)
		}
	}
	st, err := pgprocess.ReadStats(ctx, e.sink, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	if st.Completed != orders || st.Running != 0 || st.Failed != 0 {
		t.Errorf("instances: %d completed, %d running, %d failed; want %d completed", st.Completed, st.Running, st.Failed, orders)
	}
	var fired, firedTwice int
	if err := e.query(t, `SELECT count(*), count(*) FILTER (WHERE n > 1) FROM (
		SELECT count(*) AS n FROM {{schema}}.process_deadlines WHERE status = 'fired' GROUP BY id) f`).Scan(&fired, &firedTwice); err != nil {
		t.Fatal(err)
	}
	if fired != orders/3 || firedTwice != 0 {
		t.Errorf("deadlines fired for %d orders, more than once for %d; want %d and 0", fired, firedTwice, orders/3)
	}
}

// waitForAll waits, on the log, for each order of want to end, and
// returns the position of the last end.
func (e env) waitForAll(t *testing.T, ctx context.Context, want map[string][]string) es.Position {
	t.Helper()
	left := len(want)
	var end es.Position
	for recs, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("wait for %d orders to end: %v", left, err)
		}
		for _, rec := range recs {
			if strings.HasPrefix(rec.Stream, "order-") && (rec.Type == "OrderConfirmed" || rec.Type == "OrderCancelled") {
				left--
				end = rec.Position
			}
		}
		if left <= 0 {
			return end
		}
	}
	t.Fatalf("%d orders did not end", left)
	return end
}
