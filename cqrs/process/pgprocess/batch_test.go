package pgprocess_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
)

// outboxRow is a capture's row of the outbox, as the tests of batches
// read it.
type outboxRow struct {
	status      string
	attempts    int
	lastError   *string
	handledStep *int64
}

func (e env) capture(t *testing.T, orderID string) outboxRow {
	t.Helper()
	var r outboxRow
	if err := e.query(t, `SELECT status, attempts, last_error, handled_step FROM {{schema}}.process_outbox
		WHERE process = 'checkout' AND id = $1 AND command_type = $2`, orderID, cqrs.CommandName(CapturePayment{})).
		Scan(&r.status, &r.attempts, &r.lastError, &r.handledStep); err != nil {
		t.Fatalf("read the capture of order %s: %v", orderID, err)
	}
	return r
}

// placeBeforeStart places orders before the runner starts: the follower's
// first batch decides on all of them, so their captures are pending
// together when the dispatcher first finds any.
func (e env) placeBeforeStart(t *testing.T, orders ...PlaceOrder) {
	t.Helper()
	for _, o := range orders {
		e.place(t, o)
	}
}

// One batch mixes a command that is dispatched, one that is rejected and
// one that fails transiently: the three are dispatched at once by one
// dispatcher, and each outcome is recorded as its own.
func TestBatchRecordsEachOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		mu        sync.Mutex
		attempts  = map[string]int{}
		arrived   sync.WaitGroup
		together  = make(chan struct{})
		retried   = make(chan struct{})
		release   = make(chan struct{})
		notAtOnce = make(chan struct{}, 3)
	)
	arrived.Add(3)
	go func() { arrived.Wait(); close(together) }()
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			c, ok := cmd.(CapturePayment)
			if !ok {
				return next(ctx, cmd)
			}
			mu.Lock()
			attempts[c.OrderID]++
			n := attempts[c.OrderID]
			mu.Unlock()
			if n == 1 {
				// Each first attempt waits for the other two: with one
				// dispatcher, only a batch gets all three under way.
				arrived.Done()
				select {
				case <-together:
				case <-time.After(20 * time.Second):
					notAtOnce <- struct{}{}
				case <-ctx.Done():
					return cqrs.Result{}, ctx.Err()
				}
				if c.OrderID == "flaky" {
					return cqrs.Result{}, errors.New("gateway unavailable")
				}
			}
			if c.OrderID == "flaky" && n == 2 {
				// The second attempt waits until the test has read the
				// first batch's outcomes, committed by then.
				close(retried)
				select {
				case <-release:
				case <-ctx.Done():
					return cqrs.Result{}, ctx.Err()
				}
			}
			return next(ctx, cmd)
		}
	})
	e.placeBeforeStart(t, PlaceOrder{OrderID: "ok", Amount: 1}, PlaceOrder{OrderID: "declined", Amount: 500},
		PlaceOrder{OrderID: "flaky", Amount: 2})
	start(t, e.runner(pgprocess.Config{Dispatchers: 1, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}))
	select {
	case <-retried:
	case <-time.After(30 * time.Second):
		t.Fatal("the flaky capture was not retried within 30s")
	}
	if len(notAtOnce) > 0 {
		t.Errorf("%d captures waited 20s for the others; want the three dispatched at once, in one batch", len(notAtOnce))
	}
	if got := e.capture(t, "ok"); got.status != pgprocess.CommandDispatched || got.attempts != 1 || got.lastError != nil {
		t.Errorf("capture ok: status %q, %d attempts, error %v; want dispatched after 1 attempt, no error", got.status, got.attempts, got.lastError)
	}
	if got := e.capture(t, "declined"); got.status != pgprocess.CommandRejected || got.attempts != 1 ||
		got.lastError == nil || !strings.Contains(*got.lastError, errDeclined.Error()) || got.handledStep == nil || *got.handledStep != 2 {
		t.Errorf("capture declined: status %q, %d attempts, error %v, handled at step %v; want rejected after 1 attempt with %q, handled at step 2",
			got.status, got.attempts, got.lastError, got.handledStep, errDeclined)
	}
	if got := e.capture(t, "flaky"); got.status != pgprocess.CommandPending || got.attempts != 1 ||
		got.lastError == nil || !strings.Contains(*got.lastError, "gateway unavailable") {
		t.Errorf("capture flaky: status %q, %d attempts, error %v; want pending after 1 attempt with the gateway's error", got.status, got.attempts, got.lastError)
	}
	close(release)
	for order, want := range map[string][]string{
		"ok":       {"OrderPlaced", "OrderConfirmed"},
		"declined": {"OrderPlaced", "OrderCancelled"},
		"flaky":    {"OrderPlaced", "OrderConfirmed"},
	} {
		if got := e.waitForEnd(t, order); !slices.Equal(got, want) {
			t.Errorf("order %s: stream is %v; want %v", order, got, want)
		}
	}
	if got := e.capture(t, "flaky"); got.status != pgprocess.CommandDispatched || got.attempts != 2 || got.lastError != nil {
		t.Errorf("capture flaky at the end: status %q, %d attempts, error %v; want dispatched after 2 attempts, no error", got.status, got.attempts, got.lastError)
	}
}

// A command that the bus takes long to handle does not hold back the
// outcomes of the others of its batch for longer than OutcomeFlush: the
// rejection of the declined one is handed to decide while the slow one is
// still under way. (The compensation it decides waits for the dispatch
// loop, busy with the slow command: that takes a second dispatcher.)
func TestSlowCommandDoesNotHoldBackItsBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	held := make(chan struct{})
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if c, ok := cmd.(CapturePayment); ok && c.OrderID == "slow" {
				close(held)
				<-ctx.Done()
				return cqrs.Result{}, ctx.Err()
			}
			return next(ctx, cmd)
		}
	})
	e.placeBeforeStart(t, PlaceOrder{OrderID: "slow", Amount: 1}, PlaceOrder{OrderID: "declined", Amount: 500})
	start(t, e.runner(pgprocess.Config{Dispatchers: 1, OutcomeFlush: 50 * time.Millisecond}))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow capture was not dispatched within 30s")
	}
	// The outcome has no signal of its own: poll, for 30s at most.
	deadline := time.Now().Add(30 * time.Second)
	got := e.capture(t, "declined")
	for got.status == pgprocess.CommandPending && time.Now().Before(deadline) {
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
		got = e.capture(t, "declined")
	}
	if got.status != pgprocess.CommandRejected || got.handledStep == nil || *got.handledStep != 2 {
		t.Errorf("capture declined, while the slow one is under way: status %q, handled at step %v; want rejected, handled at step 2",
			got.status, got.handledStep)
	}
	if got := e.capture(t, "slow"); got.status != pgprocess.CommandPending || got.attempts != 0 {
		t.Errorf("capture slow: status %q, %d attempts; want pending, no attempt recorded while it is under way", got.status, got.attempts)
	}
}

// The deadlines due together fire in one transaction: their closed_at,
// the start of the transaction that fired them, is the same. Deadlines
// that the follower stored in one transaction have the same due_at (its
// now() plus the same delay); on a shared server the follower may see the
// orders in more than one batch, as the log shows an event only once the
// transactions older than it have ended, so the deadlines are grouped by
// due_at.
func TestDeadlinesDueTogetherFireInOneTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orders := []string{"a", "b", "c", "d", "e"}
	for _, id := range orders {
		e.place(t, PlaceOrder{OrderID: id, PayWithin: time.Microsecond, Manual: true})
	}
	start(t, e.runner(pgprocess.Config{}))
	for _, id := range orders {
		if got, want := e.waitForEnd(t, id), []string{"OrderPlaced", "OrderCancelled"}; !slices.Equal(got, want) {
			t.Errorf("order %s: stream is %v; want %v", id, got, want)
		}
	}
	rows, err := e.pool.Query(t.Context(), strings.ReplaceAll(`SELECT count(*), count(DISTINCT closed_at) FROM {{schema}}.process_deadlines
		WHERE process = 'checkout' AND status = 'fired' GROUP BY due_at`, "{{schema}}", pgxIdent(e.sink.Schema())))
	if err != nil {
		t.Fatal(err)
	}
	var fired, largest int
	var n, transactions int
	_, err = pgx.ForEachRow(rows, []any{&n, &transactions}, func() error {
		fired, largest = fired+n, max(largest, n)
		if transactions != 1 {
			t.Errorf("%d deadlines due together fired in %d transactions; want 1", n, transactions)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fired != len(orders) {
		t.Errorf("%d deadlines fired; want %d", fired, len(orders))
	}
	if largest < 2 {
		t.Skipf("the follower stored each deadline in a batch of its own; no two were due together")
	}
}
