package pgprocess_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
)

// A command that keeps failing stays pending, visible as retrying with its
// attempts and its last error, and its instance keeps running.
func TestStuckCommandIsVisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	calls := make(chan struct{})
	release := make(chan struct{})
	// The outer middleware holds the fourth attempt until the test has
	// looked: by then the third attempt's outcome is committed (the fourth
	// could only lock the row after that).
	fourth := make(chan struct{})
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		n := 0
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if _, ok := cmd.(CapturePayment); ok {
				if n++; n == 4 {
					close(fourth)
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
			}
			return next(ctx, cmd)
		}
	})
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if _, ok := cmd.(CapturePayment); ok {
				select {
				case calls <- struct{}{}:
				case <-ctx.Done():
				}
				return cqrs.Result{}, errors.New("gateway unavailable")
			}
			return next(ctx, cmd)
		}
	})
	start(t, e.runner(pgprocess.Config{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}))
	defer close(release)
	e.place(t, PlaceOrder{OrderID: "6", Amount: 1})
	for range 3 {
		<-calls
	}
	<-fourth
	st, err := pgprocess.ReadStats(t.Context(), e.sink, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	if st.PendingCommands != 1 || st.RetryingCommands != 1 || st.Running != 1 {
		t.Errorf("stats are %+v; want 1 pending command, retrying, of 1 running instance", st)
	}
	var attempts int
	var lastErr string
	if err := e.query(t, `SELECT attempts, last_error FROM {{schema}}.process_outbox WHERE command_type = $1`,
		cqrs.CommandName(CapturePayment{})).Scan(&attempts, &lastErr); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 || !strings.Contains(lastErr, "gateway unavailable") {
		t.Errorf("payment command: %d attempts, last error %q; want 3 and the gateway's error", attempts, lastErr)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := pgprocess.Config{PollInterval: -1, RetryMin: 2 * time.Second, RetryMax: time.Second}.Validate()
	for _, field := range []string{"PollInterval", "RetryMin"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate: %v; want a problem with %s", err, field)
		}
	}
	if err := (pgprocess.Config{}).Validate(); err != nil {
		t.Errorf("Validate of the zero Config: %v; want nil", err)
	}
}

// With Dispatchers set to 3, three commands are handled at once: each
// capture waits until all three are under way.
func TestDispatchersWorkAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 3
	var arrived sync.WaitGroup
	arrived.Add(n)
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if _, ok := cmd.(CapturePayment); ok {
				arrived.Done()
				all := make(chan struct{})
				go func() { arrived.Wait(); close(all) }()
				select {
				case <-all:
				case <-ctx.Done():
					return cqrs.Result{}, ctx.Err()
				}
			}
			return next(ctx, cmd)
		}
	})
	start(t, e.runner(pgprocess.Config{Dispatchers: n}))
	for i := range n {
		e.place(t, PlaceOrder{OrderID: fmt.Sprintf("d%d", i), Amount: 1})
	}
	for i := range n {
		if got := e.waitForEnd(t, fmt.Sprintf("d%d", i)); !slices.Equal(got, []string{"OrderPlaced", "OrderConfirmed"}) {
			t.Errorf("order d%d: stream is %v; want placed and confirmed", i, got)
		}
	}
}
