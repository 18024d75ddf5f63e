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
//   - A dispatcher claims up to Config.DispatchBatch pending commands that
//     are due with session advisory locks, so that several runners, and
//     Config.Dispatchers loops in each, share the work. It rebuilds each
//     command through the [process.Commands] registry, gives it its
//     derived ID and dispatches the batch on the bus at once (each
//     dispatch is the command's own transaction, so their commits share
//     WAL flushes), then records every outcome in one transaction:
//     dispatched; rejected, with the rejection handed to decide
//     (instances locked in the order of their IDs, as the follower locks
//     them, and the step of the decision that handled it); or, for a
//     transient error, the attempt, the error and the time of the next
//     attempt (exponential backoff with jitter). When the slowest commands
//     of a batch take longer than Config.OutcomeFlush, the outcomes of the
//     others are recorded in a transaction of their own meanwhile; the
//     slow command still occupies its dispatch loop until it is done.
//     The locks are taken on a connection each dispatch loop keeps for
//     itself, made from the pool's configuration but outside the pool,
//     which runs no transaction. A row lock, or an advisory lock held in a
//     transaction of the pool, would not do: a transaction held open
//     while the bus handles the commands gets an ID, and readers of the
//     log wait for older transaction IDs, so one slow command would hold
//     back every projection of the database; and the dispatch loops would
//     hold the pool's connections while the commands they dispatch wait
//     for one. When the connection breaks, or the process dies, the server
//     drops its locks and the commands are claimed again; an outcome is
//     recorded only for a command still pending, so a rejection reaches
//     decide once. Count one connection to PostgreSQL per dispatch loop
//     besides the pool; behind a pooler, it needs session pooling, like
//     LISTEN. The connection asks the server for TCP keepalives every 10 s
//     after 30 s idle, so that the claims of a machine that died end
//     about a minute later.
//   - A deadline loop fires up to Config.DeadlineBatch due deadlines
//     (due_at <= now() on the database), of as many instances, in one
//     transaction that locks their instances with SKIP LOCKED, marks each
//     fired and applies what its instance decided. It sleeps until the
//     earliest pending deadline, at most Config.PollInterval.
//
// A transaction that adds commands or deadlines sends a notification
// (pg_notify, once, with the process manager's name) on a channel of the
// read schema; every runner of that process manager, in any process,
// listens on its pool's shared listening connection and wakes its
// dispatchers and its deadline loop. Within a process they are also woken
// directly. Config.PollInterval is the fallback when a notification is
// lost.
//
// The runtime's tables live in the sink's read schema (pgsink.Config.
// ReadSchema), shared by every process manager: [InstancesTable] (state
// as jsonb, status running/completed/failed, step counter, last event,
// error), [OutboxTable] (command type and JSON, status
// pending/dispatched/rejected, attempts, last error, correlation,
// causation and trace context), [DeadlinesTable] (due_at computed by the
// database as now() + After, status pending/fired/cancelled/replaced/
// dropped, outcome) and [CountersTable] (events skipped because they
// correlated to no instance, or to one no longer running). Every writer
// locks an instance's row before that instance's deadlines, so the loops
// never deadlock each other.
//
// [ReadStats], [ListProcesses], [ListInstances] and [ReadInstance] read
// them, for dashboards and for the CLI's `processes list` and `processes
// show`: the counts of a process manager, its instances newest first (of
// a status, or the stuck ones), and one instance with its commands and
// deadlines. [StuckRule] defines once what a stuck instance is: failed; a
// pending command that has failed [StuckAttemptsDefault] times or more; a
// rejected command that no decision handled (the instance had completed or
// failed by then); or a pending deadline due more than
// [StuckGraceDefault] ago. Each list reads an index, whatever the number
// of completed instances.
//
// The projection's checkpoint is part of the instances' state: moving it
// back (projections reset) would hand events to instances that have
// decided on them already, and their decisions would be new steps with new
// command IDs. Pause and resume are safe.
//
// See package process for the guarantees, and for what a command handler
// that calls the outside world must still make idempotent.
package pgprocess
