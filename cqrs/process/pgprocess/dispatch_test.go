package pgprocess_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
)

// A command that the bus takes long to handle does not hold back the
// readers of the log: its dispatch holds no transaction ID meanwhile, so
// the follower (like every projection of the database) goes on.
func TestSlowCommandDoesNotHoldBackTheLog(t *testing.T) {
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
	start(t, e.runner(pgprocess.Config{}))
	e.place(t, PlaceOrder{OrderID: "slow", Amount: 1})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow capture was not dispatched within 30s")
	}
	e.seen(t, PlaceOrder{OrderID: "next", Manual: true}) // fails after 30s if held back
	if in := e.instance(t, "next"); in.Status != pgprocess.StatusRunning || in.Step != 1 {
		t.Errorf("instance next: status %q, step %d; want running at step 1", in.Status, in.Step)
	}
}

// More dispatchers than the pool has connections: each claims its
// commands on a connection of its own, so the commands they dispatch, and
// the transactions that record their outcomes, find the pool's
// connections free. (With the claims held in transactions of the pool, the
// dispatchers took every connection and waited for their commands, which
// waited for a connection.)
func TestDispatchersNeedNoConnectionOfThePool(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 2})
	e := openEnv(t, pool, schema)
	const orders = 300
	for i := range orders {
		e.place(t, PlaceOrder{OrderID: strconv.Itoa(i), Amount: 10})
	}
	start(t, e.runner(pgprocess.Config{Dispatchers: 4}))
	// A second or two here; with the claims in the pool's transactions,
	// not one order was confirmed.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	confirmed := map[string]bool{}
	for recs, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("%d of %d orders confirmed: %v", len(confirmed), orders, err)
		}
		for _, rec := range recs {
			if rec.Type == "OrderConfirmed" {
				confirmed[rec.Stream] = true
			}
		}
		if len(confirmed) == orders {
			return
		}
	}
	t.Fatalf("%d of %d orders confirmed: %v", len(confirmed), orders, ctx.Err())
}
