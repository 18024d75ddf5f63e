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
//	cqrs.Handle(bus, cqrs.Aggregate(orders, addItem, cqrs.AggregateOptions{}))
//
//	res, err := bus.Dispatch(ctx, AddItem{ID: idempotencyKey, OrderID: "42", SKU: "tea", Quantity: 2})
//	// res.Position is the consistency token: a read API can wait until a
//	// projection has reached it.
//
// [OnNew] creates an aggregate without loading it, [OnExisting] requires it
// to exist, and [OnAny] takes either. On a version conflict the handler
// loads and decides again, up to [AggregateOptions.MaxAttempts] times, then
// returns a [*ConflictError].
//
// # Idempotency
//
// A command that carries an ID (see [Identified]) is handled at most once:
// its events get IDs derived from the command's type and ID ([EventID]), the
// store refuses to store them twice, and dispatching the command again
// returns the original [Result] without appending anything.
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
// [*PanicError], an [*AggregateNotFoundError], an [*AggregateExistsError] and
// a [*ConflictError]. An error from a decide function reaches the caller
// wrapped, for errors.Is and errors.As.
//
// The cqrs/cqrstest package tests deciders with given events, a command and
// the expected events or error.
package cqrs
