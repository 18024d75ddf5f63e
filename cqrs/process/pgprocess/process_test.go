package pgprocess_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
)

// An order placed on the bus makes the process capture the payment; the
// payment's event makes it confirm the order; the confirmation completes
// it. Every command's events carry the order's correlation ID and trace.
func TestOrderEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start(t, e.runner(pgprocess.Config{}))
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled,
	}))
	ctx = cqrs.WithCorrelationID(ctx, "corr-1")
	if _, err := e.bus.Dispatch(ctx, PlaceOrder{OrderID: "1", Amount: 10}); err != nil {
		t.Fatal(err)
	}
	if got, want := e.waitForEnd(t, "1"), []string{"OrderPlaced", "OrderConfirmed"}; !slices.Equal(got, want) {
		t.Errorf("order stream is %v; want %v", got, want)
	}
	if got, want := e.types(t, "payment-1"), []string{"PaymentCaptured"}; !slices.Equal(got, want) {
		t.Errorf("payment stream is %v; want %v", got, want)
	}
	in := e.instance(t, "1")
	if in.Status != pgprocess.StatusCompleted || in.Step != 3 || in.LastEvent == nil || in.LastEvent.Type != "OrderConfirmed" {
		t.Errorf("instance is %+v; want status completed, step 3, last event OrderConfirmed", in)
	}
	var st checkoutState
	if err := json.Unmarshal(in.State, &st); err != nil || st != (checkoutState{OrderID: "1", Amount: 10}) {
		t.Errorf("state is %s (%v); want order 1, amount 10", in.State, err)
	}
	for _, stream := range []string{"payment-1", "order-1"} {
		recs, err := e.store.ReadStream(t.Context(), stream, es.ReadStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last := recs[len(recs)-1]
		if got := last.Metadata[es.MetaCorrelationID]; got != "corr-1" {
			t.Errorf("%s: %s correlation ID is %q; want corr-1", stream, last.Type, got)
		}
		if got := last.Metadata[es.MetaTraceParent]; !strings.Contains(got, traceID.String()) {
			t.Errorf("%s: %s traceparent is %q; want trace %s", stream, last.Type, got, traceID)
		}
		if got := last.Metadata[es.MetaCausationID]; !strings.HasPrefix(got, "checkout/1/") {
			t.Errorf("%s: %s causation ID is %q; want a command ID of checkout/1", stream, last.Type, got)
		}
	}
	var dispatched int
	if err := e.query(t, `SELECT count(*) FROM {{schema}}.process_outbox WHERE process = 'checkout' AND status = 'dispatched'`).Scan(&dispatched); err != nil {
		t.Fatal(err)
	}
	if dispatched != 2 {
		t.Errorf("dispatched commands: %d; want 2", dispatched)
	}
}

// A payment the domain rejects reaches Decide as a CommandRejected, whose
// compensation (cancelling the order) is sent; the rejection is recorded.
func TestRejectedCommandIsCompensated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start(t, e.runner(pgprocess.Config{}))
	e.place(t, PlaceOrder{OrderID: "2", Amount: 500})
	if got, want := e.waitForEnd(t, "2"), []string{"OrderPlaced", "OrderCancelled"}; !slices.Equal(got, want) {
		t.Errorf("order stream is %v; want %v", got, want)
	}
	if got := e.types(t, "payment-2"); len(got) != 0 {
		t.Errorf("payment stream is %v; want none", got)
	}
	var status, lastErr string
	if err := e.query(t, `SELECT status, last_error FROM {{schema}}.process_outbox
		WHERE process = 'checkout' AND command_type = $1`, cqrs.CommandName(CapturePayment{})).Scan(&status, &lastErr); err != nil {
		t.Fatal(err)
	}
	if status != pgprocess.CommandRejected || !strings.Contains(lastErr, errDeclined.Error()) {
		t.Errorf("payment command: status %q, error %q; want rejected with %q", status, lastErr, errDeclined)
	}
	recs, err := e.store.ReadStream(t.Context(), "order-2", es.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cancelled OrderCancelled
	if err := json.Unmarshal(recs[1].Data, &cancelled); err != nil || cancelled.Reason != "declined" {
		t.Errorf("cancellation is %s (%v); want reason declined", recs[1].Data, err)
	}
	if in := e.instance(t, "2"); in.Status != pgprocess.StatusCompleted {
		t.Errorf("instance status is %q; want completed", in.Status)
	}
}

// With two runners competing on one schema, a payment deadline fires once,
// not before its time, and a deadline cancelled before it is due never
// fires.
func TestDeadlinesFireOnceAndCancelledNever(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start(t, e.runner(pgprocess.Config{}))
	start(t, e.runner(pgprocess.Config{}))
	const within = 200 * time.Millisecond

	// "paid": its deadline is cancelled by the payment; "late": its
	// deadline is due later than paid's and fires.
	e.place(t, PlaceOrder{OrderID: "paid", PayWithin: within, Manual: true})
	if _, err := e.bus.Dispatch(t.Context(), CapturePayment{OrderID: "paid", Amount: 1}); err != nil {
		t.Fatal(err)
	}
	placed := time.Now()
	e.place(t, PlaceOrder{OrderID: "late", PayWithin: 2 * within, Manual: true})
	if got, want := e.waitForEnd(t, "paid"), []string{"OrderPlaced", "OrderConfirmed"}; !slices.Equal(got, want) {
		t.Errorf("paid order stream is %v; want %v", got, want)
	}
	if got, want := e.waitForEnd(t, "late"), []string{"OrderPlaced", "OrderCancelled"}; !slices.Equal(got, want) {
		t.Errorf("late order stream is %v; want %v", got, want)
	}
	if elapsed := time.Since(placed); elapsed < 2*within {
		t.Errorf("the late order was cancelled %v after it was placed; want at least %v", elapsed, 2*within)
	}

	type row struct{ id, status string }
	rows, err := e.pool.Query(t.Context(), `SELECT id, status FROM `+ident(e, "process_deadlines")+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.status); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{{"late", pgprocess.DeadlineFired}, {"paid", pgprocess.DeadlineCancelled}}
	if !slices.Equal(got, want) {
		t.Errorf("deadlines are %v; want %v", got, want)
	}
	if in := e.instance(t, "late"); in.Step != 3 {
		t.Errorf("late order's instance made %d decisions; want 3 (placed, deadline, cancelled)", in.Step)
	}
}

// A deadline of a process that completed before it was due is dropped,
// with that outcome, not fired.
func TestDeadlineOfCompletedProcessIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start(t, e.runner(pgprocess.Config{}))
	e.place(t, PlaceOrder{OrderID: "3", PayWithin: 100 * time.Millisecond, Manual: true})
	// The order is confirmed directly; the process completes without
	// cancelling its deadline.
	if _, err := e.bus.Dispatch(t.Context(), ConfirmOrder{OrderID: "3"}); err != nil {
		t.Fatal(err)
	}
	e.waitForEnd(t, "3")
	// A later deadline that fires shows that the loop got past the first.
	e.place(t, PlaceOrder{OrderID: "4", PayWithin: 200 * time.Millisecond, Manual: true})
	e.waitForEnd(t, "4")
	var status, outcome string
	if err := e.query(t, `SELECT status, outcome FROM {{schema}}.process_deadlines WHERE id = '3'`).Scan(&status, &outcome); err != nil {
		t.Fatal(err)
	}
	if status != pgprocess.DeadlineDropped || outcome != "dropped: process completed" {
		t.Errorf("deadline of the completed process: status %q, outcome %q; want dropped, %q", status, outcome, "dropped: process completed")
	}
	if got, want := e.types(t, "order-3"), []string{"OrderPlaced", "OrderConfirmed"}; !slices.Equal(got, want) {
		t.Errorf("order stream is %v; want %v", got, want)
	}
}

// An event that correlates to no process is skipped and counted; an
// instance whose stored state no longer decodes is marked failed with the
// error and keeps its state, and the other instances go on.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.runner(pgprocess.Config{})
	start(t, r)
	e.place(t, PlaceOrder{OrderID: "broken", Manual: true})
	e.place(t, PlaceOrder{OrderID: "ok0", Amount: 1})
	e.waitForEnd(t, "ok0")
	// A code change: the stored state no longer decodes.
	if _, err := e.pool.Exec(t.Context(), `UPDATE `+ident(e, "process_instances")+` SET state = '{"Amount": "many"}' WHERE id = 'broken'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bus.Dispatch(t.Context(), WriteNote{Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bus.Dispatch(t.Context(), CapturePayment{OrderID: "broken", Amount: 1}); err != nil {
		t.Fatal(err)
	}
	e.place(t, PlaceOrder{OrderID: "ok", Amount: 1})
	if got, want := e.waitForEnd(t, "ok"), []string{"OrderPlaced", "OrderConfirmed"}; !slices.Equal(got, want) {
		t.Errorf("the other order's stream is %v; want %v", got, want)
	}
	in := e.instance(t, "broken")
	if in.Status != pgprocess.StatusFailed || !strings.Contains(in.Error, "decode state") ||
		in.LastEvent == nil || in.LastEvent.Type != "PaymentCaptured" || string(in.State) != `{"Amount": "many"}` {
		t.Errorf("broken instance is %+v; want failed with a decode error at PaymentCaptured, its state kept", in)
	}
	if got := e.types(t, "order-broken"); !slices.Equal(got, []string{"OrderPlaced"}) {
		t.Errorf("broken order's stream is %v; want only OrderPlaced", got)
	}
	st, err := pgprocess.ReadStats(t.Context(), e.sink, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	if st.Uncorrelated != 1 || st.Failed != 1 || st.Completed != 2 || st.LastSkipped == nil || st.LastSkipped.Type != "Note" {
		t.Errorf("stats are %+v; want 1 uncorrelated (Note), 1 failed, 2 completed", st)
	}
}

// A command that fails transiently stays pending, its attempts and error
// recorded, and is dispatched again until it succeeds.
func TestTransientFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fails := make(chan struct{}, 3)
	for range 3 {
		fails <- struct{}{}
	}
	e.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if _, ok := cmd.(CapturePayment); ok {
				select {
				case <-fails:
					return cqrs.Result{}, errors.New("gateway unavailable")
				default:
				}
			}
			return next(ctx, cmd)
		}
	})
	start(t, e.runner(pgprocess.Config{RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}))
	e.place(t, PlaceOrder{OrderID: "5", Amount: 1})
	if got, want := e.waitForEnd(t, "5"), []string{"OrderPlaced", "OrderConfirmed"}; !slices.Equal(got, want) {
		t.Errorf("order stream is %v; want %v", got, want)
	}
	var attempts int
	var lastErr *string
	if err := e.query(t, `SELECT attempts, last_error FROM {{schema}}.process_outbox WHERE command_type = $1`,
		cqrs.CommandName(CapturePayment{})).Scan(&attempts, &lastErr); err != nil {
		t.Fatal(err)
	}
	if attempts != 4 || lastErr != nil {
		t.Errorf("payment command: %d attempts, last error %v; want 4 attempts and no error", attempts, lastErr)
	}
}

func ident(e env, table string) string {
	return pgxIdent(e.sink.Schema(), table)
}

var _ = process.Permanent

// A runner stopped while it starts returns nil, as it does when stopped
// later: an application shutting down right after start-up is not a
// failure.
func TestRunStoppedAtStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.runner(pgprocess.Config{}).Run(ctx); err != nil {
		t.Errorf("Run with an ended context = %v; want nil", err)
	}
}
