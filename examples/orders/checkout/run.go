package checkout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections/pgsink"
)

// Commands returns the registry of the commands the checkout and the
// simulated gateway send.
func Commands() *process.Commands {
	c := &process.Commands{}
	process.RegisterCommand[orders.ReserveStock](c)
	process.RegisterCommand[orders.ReleaseStock](c)
	process.RegisterCommand[orders.RequestPayment](c)
	process.RegisterCommand[orders.CapturePayment](c)
	process.RegisterCommand[orders.DeclinePayment](c)
	process.RegisterCommand[orders.VoidPayment](c)
	process.RegisterCommand[orders.CompleteCheckout](c)
	process.RegisterCommand[orders.FailCheckout](c)
	return c
}

// Runners returns the runners of the checkout and of the simulated
// gateway, which read the log of store through reg, keep their rows in
// sink's read schema (create them with pgprocess.Migrate) and dispatch on
// bus, where orders.Register wired the example's commands. Run each with
// its Run method. Runners does no I/O; it panics if cfg or rc is invalid.
func Runners(store es.Store, reg *es.Registry, sink *pgsink.Sink, bus *cqrs.Bus, cfg Config, rc pgprocess.Config) []*pgprocess.Runner {
	cmds := Commands()
	return []*pgprocess.Runner{
		pgprocess.New(store, reg, sink, bus, process.Define[State](New(cfg)), cmds, rc),
		pgprocess.New(store, reg, sink, bus, process.Define[GatewayState](NewGateway(cfg)), cmds, rc),
	}
}

// View is where an order's checkout is, as the order screen shows it.
type View struct {
	// Status is one of the Status constants; "failed" when the process
	// failed (Error says why), which an operator must look at.
	Status string `json:"status"`
	// Reason says why the order was cancelled.
	Reason string `json:"reason,omitempty"`
	// OutOfStock lists the products it could not reserve.
	OutOfStock []string `json:"out_of_stock,omitempty"`
	Card       string   `json:"card,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// StatusFailed is the [View] status of a checkout whose process failed.
const StatusFailed = "failed"

// Read returns the checkout of an order, or ok=false when the order has
// none (or the process has not seen its start yet).
func Read(ctx context.Context, sink *pgsink.Sink, orderID string) (View, bool, error) {
	in, err := pgprocess.ReadInstance(ctx, sink, Name, orderID)
	if errors.Is(err, pgprocess.ErrNotFound) {
		return View{}, false, nil
	}
	if err != nil {
		return View{}, false, fmt.Errorf("read the checkout of order %s: %w", orderID, err)
	}
	var s State
	if len(in.State) > 0 {
		if err := json.Unmarshal(in.State, &s); err != nil {
			return View{}, false, fmt.Errorf("read the checkout of order %s: decode its state: %w", orderID, err)
		}
	}
	v := View{Status: s.Status, Reason: s.Reason, OutOfStock: s.OutOfStock, Card: s.Card}
	if in.Status == pgprocess.StatusFailed {
		v.Status, v.Error = StatusFailed, in.Error
	}
	return v, true, nil
}
