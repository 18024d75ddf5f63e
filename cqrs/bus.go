package cqrs

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

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
	mu     sync.Mutex // serializes changes to routes
	routes atomic.Pointer[routeTable]
}

type routeTable struct {
	byType     map[reflect.Type]*route
	middleware []Middleware
	names      []string // registered command names, sorted
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
	b := &Bus{}
	b.routes.Store(&routeTable{byType: map[reflect.Type]*route{}})
	return b
}

// Handle registers h for commands of type C, which must be a named type
// that is not a pointer, such as a struct. Dispatching a *C reaches h too, with the
// value it points to. Handle panics if C is already registered, if another
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
	old := b.routes.Load()
	if _, dup := old.byType[t]; dup {
		panic(fmt.Sprintf("cqrs: handle %s: a handler is already registered for it", name))
	}
	if _, dup := slices.BinarySearch(old.names, name); dup {
		panic(fmt.Sprintf("cqrs: handle %s (package %s): a command type of another package with the same name is registered", name, t.PkgPath()))
	}
	next := &routeTable{byType: make(map[reflect.Type]*route, len(old.byType)+1), middleware: old.middleware}
	for k, v := range old.byType {
		next.byType[k] = v
	}
	next.byType[t] = r
	next.names = append(slices.Clone(old.names), name)
	slices.Sort(next.names)
	r.chain = compose(next.middleware, r.inner)
	b.routes.Store(next)
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
	old := b.routes.Load()
	next := &routeTable{
		byType:     make(map[reflect.Type]*route, len(old.byType)),
		middleware: append(slices.Clone(old.middleware), mw...),
		names:      old.names,
	}
	for t, r := range old.byType {
		c := *r
		c.chain = compose(next.middleware, c.inner)
		next.byType[t] = &c
	}
	b.routes.Store(next)
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
// [*ConflictError] or the error a decide function returned.
//
// ctx carries what the appended events' metadata records: see
// [WithCorrelationID], [WithMetadata] and [EventMetadata].
func (b *Bus) Dispatch(ctx context.Context, cmd any) (res Result, err error) {
	if cmd == nil {
		return Result{}, fmt.Errorf("cqrs: dispatch: %w", ErrNilCommand)
	}
	t := reflect.TypeOf(cmd)
	tab := b.routes.Load()
	r, ok := tab.byType[t]
	if !ok && t.Kind() == reflect.Pointer {
		r, ok = tab.byType[t.Elem()]
	}
	if !ok {
		return Result{}, &UnknownCommandError{Command: typeName(t), Registered: slices.Clone(tab.names)}
	}
	cmd, ok = r.value(cmd)
	if !ok {
		return Result{}, fmt.Errorf("cqrs: dispatch %s: nil pointer: %w", r.name, ErrNilCommand)
	}
	defer recoverPanic(r.name, &res, &err)
	ctx = context.WithValue(ctx, scopeKey{}, newScope(ctx, r.name, r.id(cmd)))
	return r.chain(ctx, cmd)
}

// recoverPanic turns a panic into a *PanicError for command name. It must be
// deferred directly.
func recoverPanic(name string, res *Result, err *error) {
	if v := recover(); v != nil {
		*res = Result{}
		*err = &PanicError{Command: name, Value: v, Stack: debug.Stack()}
	}
}
