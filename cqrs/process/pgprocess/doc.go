// Package pgprocess runs process managers (see package process) on
// PostgreSQL:
//
//	sink := pgsink.New(pool, pgsink.Config{})
//	// once, at deployment: sink.Migrate(ctx) and pgprocess.Migrate(ctx, sink)
//	cmds := &process.Commands{}
//	process.RegisterCommand[CapturePayment](cmds)
//	r := pgprocess.New(store, reg, sink, bus, process.Define(checkout{}), cmds, pgprocess.Config{})
//	err := r.Run(ctx)
//
// A [Runner] runs three loops:
//
//   - A pgsink projection named [ProjectionPrefix] + the manager's name
//     follows the log, with the Worker machinery of projections
//     (checkpoint, lease, error policy, status, pause and resume): each
//     batch loads the states of its instances in one query, runs decide on
//     each event, and stores the new states, the decided commands (in an
//     outbox table) and deadlines, in the transaction that moves the
//     checkpoint.
//   - A dispatcher takes pending commands (FOR UPDATE SKIP LOCKED, so
//     several runners, and Config.Dispatchers loops in each, share the
//     work), rebuilds each through the
//     [process.Commands] registry, gives it its derived ID and dispatches
//     it on the bus, then records the outcome in the same transaction:
//     dispatched; rejected, with the rejection handed to decide; or, for a
//     transient error, the attempt, the error and the time of the next
//     attempt (exponential backoff with jitter).
//   - A deadline loop fires due deadlines (due_at <= now() on the
//     database), and marks each fired in the transaction that applies what
//     decide made of it. It sleeps until the earliest pending deadline, at
//     most Config.PollInterval, and wakes up when this process adds one.
//
// The runtime's tables live in the sink's read schema (pgsink.Config.
// ReadSchema), shared by every process manager: [InstancesTable] (state
// as jsonb, status running/completed/failed, step counter, last event,
// error), [OutboxTable] (command type and JSON, status
// pending/dispatched/rejected, attempts, last error, correlation,
// causation and trace context), [DeadlinesTable] (due_at computed by the
// database as now() + After, status pending/fired/cancelled/replaced/
// dropped, outcome) and [CountersTable] (events skipped because they
// correlated to no instance, or to one no longer running). [ReadStats]
// and [ReadInstance] read them. Every writer locks an instance's row
// before that instance's deadlines, so the loops never deadlock each
// other.
//
// The projection's checkpoint is part of the instances' state: moving it
// back (projections reset) would hand events to instances that have
// decided on them already, and their decisions would be new steps with new
// command IDs. Pause and resume are safe.
//
// See package process for the guarantees, and for what a command handler
// that calls the outside world must still make idempotent.
package pgprocess
