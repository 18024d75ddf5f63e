package pgprocess_test

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections/pgsink"
)

// Wiring a process manager to PostgreSQL: the store and the bus of the
// command side, a sink for the runtime's rows, and the command types the
// process sends.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/shop")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	store := pgstore.New(pool, pgstore.Config{})
	reg := newRegistry()
	bus := newBus(store, reg)
	sink := pgsink.New(pool, pgsink.Config{})
	if _, err := sink.Migrate(ctx); err != nil {
		panic(err)
	}
	if err := pgprocess.Migrate(ctx, sink); err != nil {
		panic(err)
	}

	cmds := &process.Commands{}
	process.RegisterCommand[CapturePayment](cmds)
	process.RegisterCommand[ConfirmOrder](cmds)
	process.RegisterCommand[CancelOrder](cmds)
	r := pgprocess.New(store, reg, sink, bus, process.Define(checkout{}), cmds,
		pgprocess.Config{PollInterval: 500 * time.Millisecond})
	if err := r.Run(ctx); err != nil {
		panic(err)
	}
}
