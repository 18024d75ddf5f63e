package pgprocess_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
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
