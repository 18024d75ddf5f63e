// Package process runs process managers (sagas): long-running processes
// that keep several aggregates, or services, consistent without a
// distributed transaction. A process manager reacts to events, keeps a
// state per process instance, sends commands, sets deadlines, and
// compensates when a step is rejected or does not happen in time.
//
// A [Manager] declares its [Manager.Name], the event types it
// [Manager.Handles], how an event is correlated to an instance
// ([Manager.Correlate], an order ID for example) and a pure decide
// function: (state, [Input]) -> [Decision]. An Input is an
// [EventReceived], a [DeadlineFired] or a [CommandRejected]; a Decision
// holds the new state, the commands to send, the [Deadline]s to set or
// cancel, and whether the instance is done. [Define] turns a Manager into
// the [Process] a runtime runs; the runtime is an adapter, in a
// sub-package: cqrs/process/pgprocess for PostgreSQL. processtest tests a
// Manager with given/when/then scenarios, without a database.
//
// # Commands
//
// Each command type a process manager sends embeds [ID] (or implements
// [IDSetter]) and is registered in a [Commands] with [RegisterCommand].
// The runtime stores the decided commands and dispatches them on a
// [cqrs.Bus] with an ID derived from the process, the instance, the
// decision's step and the command's index ([CommandIDFor]). The context of
// the dispatch carries the correlation ID and the trace context of the
// event that led to the decision (see [cqrs.ContextFromMetadata]), so the
// command's events join the same correlation; their causation ID is the
// command's ID.
//
// # Guarantees of the PostgreSQL runtime
//
//   - The state of every instance, the commands it decided and its
//     deadlines are stored in the transaction that moves the checkpoint of
//     the log: an event is decided on once in effect.
//   - A command is applied at most once and, unless it keeps failing, at
//     least once: a crash after a dispatch and before it is recorded
//     dispatches it again with the same ID, and the bus answers with the
//     first dispatch's result instead of appending again (see
//     [cqrs.Identified]). A command the bus refuses for good ([Permanent])
//     is recorded as rejected and reaches Decide as a [CommandRejected], in
//     one transaction, so the manager can compensate. Other errors are
//     retried with backoff; attempts and the last error are stored, so a
//     command that keeps failing is visible as stuck.
//   - A deadline fires once in effect, at or shortly after its time on the
//     database's clock (the workers' clocks do not matter), across
//     restarts and with several runners: it is marked fired in the
//     transaction that applies what Decide made of it. A deadline cancelled
//     before it fires never fires. A deadline of an instance that is no
//     longer running is marked dropped, with the reason.
//   - An event of a handled type that correlates to no instance is skipped
//     and counted. An instance whose state does not decode (after a change
//     of the state type), whose Decide fails, or that decides an
//     unregistered command, is marked failed with the error, its stored
//     state untouched; the other instances go on. Events for an instance
//     that is no longer running are counted as ignored.
//
// # What stays with the user
//
// The bus deduplicates what a command appends, not what its handler does
// elsewhere. A handler that calls the outside world (a payment gateway, an
// e-mail service) may run again for the same command after a crash, so it
// must make that call idempotent itself: pass the command's ID
// ([cqrs.Identified]) as the gateway's idempotency key, or record the call
// before making it. Decide must be pure and deterministic: it may be run
// again on the same input when a transaction is retried. The commands of
// one decision are dispatched in no particular order, and possibly by
// different runners: a manager that needs one after another waits for the
// first one's event. A rejected command is dispatched again after a crash
// before its rejection was recorded, so its handler must reject it again
// (as a decide function over the same aggregate does). The bus finds the
// original result of a command only among the latest events of its stream
// (cqrs.AggregateConfig.IdempotencyWindow): a command dispatched again
// after that many other events were appended to its stream is still never
// applied twice, but may get the aggregate's refusal instead, which reaches
// Decide as a CommandRejected.
package process
