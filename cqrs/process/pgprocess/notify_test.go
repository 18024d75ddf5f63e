package pgprocess_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/internal/pgtest"
)

// A command that the follower of runner A decides is dispatched by runner
// B, on another pool (another process, for PostgreSQL), without waiting
// for B's PollInterval of an hour: A's transaction notifies B.
//
// What makes it discriminate: A holds the log's lease (its follower
// decided the first command) and its only dispatcher is busy with that
// first command, held in A's bus until the test ends; so A cannot dispatch
// the second command, and only B's dispatcher, which has nothing else to
// wake it within the hour, can. B does not count the held row as due work
// (its next-row query skips rows that a dispatcher holds).
func TestNotifyWakesRunnerOfAnotherProcess(t *testing.T) {
	t.Parallel()
	poolA, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
	a := openEnv(t, poolA, schema)
	// B's pool signals each time B's dispatcher has looked for the next
	// command and is about to wait.
	looked := &queryDone{match: "min(o.next_attempt_at)", ch: make(chan struct{}, 1)}
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	cfg.ConnConfig.Tracer = looked
	poolB, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(poolB.Close)
	b := openEnv(t, poolB, schema)

	heldByA := make(chan struct{})
	a.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if c, ok := cmd.(CapturePayment); ok {
				if c.OrderID != "first" {
					t.Errorf("runner A dispatched the capture of order %s; want only the first", c.OrderID)
				}
				close(heldByA)
				<-ctx.Done()
				return cqrs.Result{}, ctx.Err()
			}
			return next(ctx, cmd)
		}
	})
	dispatchedByB := make(chan string, 4)
	b.bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if c, ok := cmd.(CapturePayment); ok {
				dispatchedByB <- c.OrderID
			}
			return next(ctx, cmd)
		}
	})

	start(t, a.runner(pgprocess.Config{PollInterval: time.Hour}))
	a.place(t, PlaceOrder{OrderID: "first", Amount: 1})
	select { // A follows the log, and its dispatcher is busy
	case <-heldByA:
	case <-time.After(30 * time.Second):
		t.Fatal("runner A did not dispatch the first order's capture within 30s")
	}
	start(t, b.runner(pgprocess.Config{PollInterval: time.Hour}))
	// The second order's command is decided after B's dispatcher has found
	// nothing it may take and waits (a wake-up that comes meanwhile is
	// kept, in a channel of capacity one).
	select {
	case <-looked.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("runner B's dispatcher did not look for commands within 30s")
	}
	placed := time.Now()
	a.place(t, PlaceOrder{OrderID: "second", Amount: 1})
	select {
	case id := <-dispatchedByB:
		if id != "second" {
			t.Errorf("runner B dispatched the capture of order %s; want second", id)
		}
		t.Logf("runner B dispatched the command %v after the order was placed", time.Since(placed))
	case <-time.After(30 * time.Second):
		t.Fatal("runner B did not dispatch the second order's capture within 30s; its PollInterval is an hour")
	}
}

// queryDone signals on ch when a query whose SQL contains match ends.
type queryDone struct {
	match string
	ch    chan struct{}
}

type queryDoneKey struct{}

func (q *queryDone) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, q.match) {
		return context.WithValue(ctx, queryDoneKey{}, true)
	}
	return ctx
}

func (q *queryDone) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if ctx.Value(queryDoneKey{}) != nil {
		select {
		case q.ch <- struct{}{}:
		default:
		}
	}
}
