package cqrs

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/stratadev/strata/es"
)

// Result says what handling a command wrote.
type Result struct {
	// Stream is the stream the command's events went to.
	Stream string
	// Version is the stream's version after the command: the version of its
	// last event, or the aggregate's current version when it appended
	// nothing.
	Version int64
	// Position is the global position of the command's last event, the
	// consistency token for read-your-writes: a projection whose checkpoint
	// has reached it reflects the command. It is zero ([es.Start]) when the
	// command appended nothing, so there is nothing to wait for.
	Position es.Position
}

func appendResult(r es.AppendResult) Result {
	return Result{Stream: r.Stream, Version: r.Version, Position: r.Position}
}

// Handler handles commands of type C. It returns what it wrote, or an error;
// handlers made with [Aggregate] cover the common case.
type Handler[C any] func(ctx context.Context, cmd C) (Result, error)

// Next is a handler as a middleware sees it: the command is a value of a
// registered type (never a pointer), whose name [CommandName] returns.
type Next func(ctx context.Context, cmd any) (Result, error)

// Middleware wraps the handling of every command dispatched on a [Bus], for
// logging, tracing, authorization and the like. It may act before and after
// calling next, or return without calling it to refuse the command.
// [Logging] and [Tracing] are ready-made.
type Middleware func(next Next) Next

// Bus dispatches commands to the handlers registered for their types. A Bus
// is like an [net/http.ServeMux]: build it at start-up with [Handle] and
// [Bus.Use], then call [Bus.Dispatch] from any number of goroutines.
//
// Every dispatch runs, from the outside in: the middleware in the order it
// was added, then the command's Validate method (see [Validator]), then the
// handler. A panic anywhere in that chain is recovered and returned as a
// [*PanicError]; the handler's panic is converted inside the middleware, so
// a logging or tracing middleware sees it as an error.
type Bus struct {
	mu         sync.RWMutex
	routes     map[reflect.Type]*route
	names      []string // registered command names, sorted
	middleware []Middleware
}

type route struct {
	name  string
	value func(cmd any) (any, bool) // the command as a value of the registered type; false for a nil pointer
	id    func(cmd any) string      // the command's ID, see Identified
	inner Next                      // validation and the handler, under recover
	chain Next                      // inner wrapped in the middleware
}

// NewBus returns a bus with no handlers and no middleware. A bus has nothing
// else to configure: retries and options belong to the handlers, logging and
// tracing to middleware.
func NewBus() *Bus {
	return &Bus{routes: map[reflect.Type]*route{}}
}

// Handle registers h for commands of type C, which must be a named type
// that is not a pointer, such as a struct. Dispatching a *C reaches h too,
// with the value it points to. Handle panics if C is already registered, if another
// registered type has the same name (see [CommandName]), if C is a pointer,
// interface or unnamed type, or if h is nil: all programming errors found at
// start-up.
func Handle[C any](b *Bus, h Handler[C]) {
	t := reflect.TypeFor[C]()
	name := t.String()
	switch {
	case h == nil:
		panic(fmt.Sprintf("cqrs: handle %s: nil handler", name))
	case t.Kind() == reflect.Pointer:
		panic(fmt.Sprintf("cqrs: handle %s: register the value type %s, not a pointer; dispatching a pointer still works", name, t.Elem()))
	case t.Kind() == reflect.Interface:
		panic(fmt.Sprintf("cqrs: handle %s: a command type must be concrete, not an interface", name))
	case t.Name() == "":
		panic(fmt.Sprintf("cqrs: handle %s: a command type must be a named type", name))
	}
	r := &route{
		name: name,
		value: func(cmd any) (any, bool) {
			if p, ok := cmd.(*C); ok {
				if p == nil {
					return nil, false
				}
				return *p, true
			}
			return cmd, true
		},
		id: func(cmd any) string { return commandID(cmd.(C)) },
		inner: func(ctx context.Context, cmd any) (res Result, err error) {
			c, ok := cmd.(C)
			if !ok {
				return Result{}, fmt.Errorf("cqrs: handle %s: a middleware passed on a %s instead", name, CommandName(cmd))
			}
			defer recoverPanic(name, &res, &err)
			if err := validate(name, c); err != nil {
				return Result{}, err
			}
			return h(ctx, c)
		},
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.routes[t]; dup {
		panic(fmt.Sprintf("cqrs: handle %s: a handler is already registered for it", name))
	}
	i, dup := slices.BinarySearch(b.names, name)
	if dup {
		panic(fmt.Sprintf("cqrs: handle %s (package %s): a command type of another package with the same name is registered", name, t.PkgPath()))
	}
	r.chain = compose(b.middleware, r.inner)
	b.routes[t] = r
	b.names = slices.Insert(b.names, i, name)
}

// Use adds middleware around every handler, the first one outermost. It may
// be called before or after [Handle]; it applies to all handlers. Add
// middleware at start-up: a dispatch already under way keeps the chain it
// started with.
func (b *Bus) Use(mw ...Middleware) {
	for _, m := range mw {
		if m == nil {
			panic("cqrs: use: nil middleware")
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.middleware = append(b.middleware, mw...)
	for _, r := range b.routes {
		r.chain = compose(b.middleware, r.inner)
	}
}

func compose(mw []Middleware, h Next) Next {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Dispatch hands cmd to the handler registered for its type and returns
// what it wrote. cmd may be a value of a registered type or a pointer to
// one.
//
// Errors: [ErrNilCommand] for a nil command; an [*UnknownCommandError] for a
// type with no handler; a [*ValidationError] when Validate fails; a
// [*PanicError] when something panicked; otherwise the handler's error,
// such as an [*AggregateNotFoundError], an [*AggregateExistsError], a
// [*ConflictError], a [*CommandIDReusedError], an error wrapping
// [es.ErrUnknownOutcome] or the error a decide function returned.
//
// ctx carries what the appended events' metadata records: see
// [WithCorrelationID], [WithMetadata] and [EventMetadata].
func (b *Bus) Dispatch(ctx context.Context, cmd any) (res Result, err error) {
	if cmd == nil {
		return Result{}, fmt.Errorf("cqrs: dispatch: %w", ErrNilCommand)
	}
	r, chain, err := b.route(reflect.TypeOf(cmd))
	if err != nil {
		return Result{}, err
	}
	cmd, ok := r.value(cmd)
	if !ok {
		return Result{}, fmt.Errorf("cqrs: dispatch %s: nil pointer: %w", r.name, ErrNilCommand)
	}
	defer recoverPanic(r.name, &res, &err)
	ctx = context.WithValue(ctx, scopeKey{}, newScope(ctx, r.name, r.id(cmd)))
	return chain(ctx, cmd)
}

// route returns the route for commands of type t, or of the type t points
// to, and its chain as it is now.
func (b *Bus) route(t reflect.Type) (*route, Next, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.routes[t]
	if !ok && t.Kind() == reflect.Pointer {
		r, ok = b.routes[t.Elem()]
	}
	if !ok {
		return nil, nil, &UnknownCommandError{Command: typeName(t), Registered: slices.Clone(b.names)}
	}
	return r, r.chain, nil
}

// recoverPanic turns a panic into a *PanicError for command name. It must be
// deferred directly.
func recoverPanic(name string, res *Result, err *error) {
	if v := recover(); v != nil {
		*res = Result{}
		*err = &PanicError{Command: name, Value: v, Stack: debug.Stack()}
	}
}
