// Package cqrs is the command side of strata: commands, the [Bus] that
// dispatches them to typed handlers, middleware, and the aggregate command
// handler that loads an aggregate, decides and appends with optimistic
// concurrency.
//
// A command is a plain Go struct. A [Decider] says how it acts on an
// aggregate, and [Aggregate] wires the decider to an [es.Repository]:
//
//	var addItem = cqrs.OnExisting(
//		func(c AddItem) string { return c.OrderID },
//		func(ctx context.Context, o *Order, c AddItem) ([]any, error) {
//			if o.Confirmed {
//				return nil, ErrOrderConfirmed
//			}
//			return []any{ItemAdded{OrderID: c.OrderID, SKU: c.SKU, Quantity: c.Quantity}}, nil
//		})
//
//	bus := cqrs.NewBus()
//	bus.Use(cqrs.Logging(logger), cqrs.Tracing(cqrs.TracingConfig{}))
//	cqrs.Handle(bus, cqrs.Aggregate(orders, addItem, cqrs.AggregateConfig{}))
//
//	res, err := bus.Dispatch(ctx, AddItem{ID: idempotencyKey, OrderID: "42", SKU: "tea", Quantity: 2})
//	// res.Position is the consistency token: a read API can wait until a
//	// projection has reached it.
//
// [OnNew] creates an aggregate without loading it, [OnExisting] requires it
// to exist, and [OnAny] takes either. On a version conflict the handler
// loads and decides again, up to [AggregateConfig.MaxAttempts] times, then
// returns a [*ConflictError].
//
// # Idempotency
//
// A command that carries an ID (see [Identified]) is handled at most once:
// its events get IDs derived from the command's type and ID ([EventID]), the
// store refuses to store them twice, and dispatching the command again
// returns the original [Result] without appending anything. There is no
// flag that tells a repeat from the first dispatch: the result is the same.
//
// Dispatching again means the same command: the same type, the same ID, the
// same aggregate and the same payload, which is the command's JSON encoding
// (its exported fields). Its events store the hex SHA-256 of that encoding
// under [MetaCommandHash]. A command with the ID of an earlier command of
// its type that had another payload, or named another aggregate, is refused
// with a [*CommandIDReusedError] (unwrapping to [ErrCommandIDReused]) and
// nothing is written; the earlier command's result is not returned. Whether
// the same command is refused or answered does not depend on what it would
// decide now: after the aggregate changed it may decide other events, an
// error, or nothing, and it still gets the original result (for an error or
// nothing, when the original events are among the stream's latest
// [AggregateConfig.IdempotencyWindow] events). A command that
// decided no events left no trace, so its ID may be used again; events
// stored before the hash existed are taken to match any payload. A field
// that differs between a request and its retry without changing what is
// asked (a receipt time, a trace ID) makes every retry another payload:
// keep it out of the encoding with the `json:"-"` tag.
//
// The checks cost a read of one event after each append of a command with an
// ID (the store answers a repeat that lands where the original did with the
// original result, whatever its content), and a search of the stream's
// latest events when the decision fails or is empty; see
// [AggregateConfig.IdempotencyWindow].
//
// # Unknown outcomes
//
// When the connection to the store breaks while an append commits, the
// append may have been stored or not, and the store returns an error
// wrapping [es.ErrUnknownOutcome]. The handler then appends the same events
// again, with the same event IDs at the same expected version, without
// deciding again: the store returns the original result if the first
// attempt was stored, and stores the events once if it was not. Commands
// without an ID get event IDs chosen by the handler for this purpose, so
// they too are applied exactly once across a dropped connection. After
// [AggregateConfig.UnknownOutcomeRetries] retries whose outcome is still
// unknown, the dispatch fails with an error that wraps
// [es.ErrUnknownOutcome]: dispatching a command with an ID again is then
// safe; a command without one may be applied twice.
//
// # Metadata
//
// Every appended event carries the correlation ID ([WithCorrelationID]),
// the causation ID (the command's ID), the command's type name
// ([CommandName]), the caller's W3C trace context, and the caller's own
// metadata ([WithMetadata]); see [EventMetadata]. [ContextFromMetadata]
// turns an event's metadata back into a context that continues the trace
// and the correlation, for projections and process managers.
//
// # Bad input
//
// Every failure is a typed error that unwraps to a sentinel, and none leaves
// anything half-written: [ErrNilCommand], [ErrUnknownCommand], a
// [*ValidationError] (before anything is loaded; see [Validator]), a
// [*PanicError], an [*AggregateNotFoundError], an [*AggregateExistsError], a
// [*ConflictError] and a [*CommandIDReusedError]. An error wrapping
// [es.ErrUnknownOutcome] says that the command may or may not be applied. An error from a decide function reaches the caller
// wrapped, for errors.Is and errors.As.
//
// # Metrics
//
// The [Metrics] middleware counts commands by type and [Outcome], times
// them, and counts the retries after version conflicts, through an
// OpenTelemetry MeterProvider (docs/observability.md lists every metric).
//
// The cqrs/cqrstest package tests deciders with given events, a command and
// the expected events or error.
package cqrs
