package cqrs_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
)

type ping struct{ N int }

type pong struct{}

func okHandler(_ context.Context, c ping) (cqrs.Result, error) {
	return cqrs.Result{Version: int64(c.N)}, nil
}

func TestDispatchValueAndPointer(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	cqrs.Handle(bus, okHandler)
	for _, cmd := range []any{ping{N: 7}, &ping{N: 7}} {
		res, err := bus.Dispatch(t.Context(), cmd)
		if err != nil || res.Version != 7 {
			t.Fatalf("dispatch %T: %+v, %v", cmd, res, err)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	_, err := bus.Dispatch(t.Context(), pong{})
	if !errors.Is(err, cqrs.ErrUnknownCommand) || err.Error() != "cqrs: dispatch cqrs_test.pong: unknown command; no command types are registered" {
		t.Fatalf("unknown command on an empty bus: %v", err)
	}
	cqrs.Handle(bus, okHandler)
	cqrs.Handle(bus, func(context.Context, AddItem) (cqrs.Result, error) { return cqrs.Result{}, nil })
	_, err = bus.Dispatch(t.Context(), &pong{})
	var u *cqrs.UnknownCommandError
	if !errors.As(err, &u) || u.Command != "cqrs_test.pong" {
		t.Fatalf("unknown command: %v", err)
	}
	if want := "cqrs: dispatch cqrs_test.pong: unknown command; registered: cqrs_test.AddItem, cqrs_test.ping"; err.Error() != want {
		t.Fatalf("error:\n got %q\nwant %q", err, want)
	}
}

func TestNilCommand(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	cqrs.Handle(bus, okHandler)
	for _, cmd := range []any{nil, (*ping)(nil)} {
		if _, err := bus.Dispatch(t.Context(), cmd); !errors.Is(err, cqrs.ErrNilCommand) {
			t.Fatalf("dispatch %#v: %v", cmd, err)
		}
	}
}

func TestHandleMisuse(t *testing.T) {
	t.Parallel()
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			r := recover()
			if s, _ := r.(string); !strings.Contains(s, want) {
				t.Errorf("%s: panic %v; want one containing %q", name, r, want)
			}
		}()
		f()
	}
	bus := cqrs.NewBus()
	cqrs.Handle(bus, okHandler)
	mustPanic("twice", "already registered", func() { cqrs.Handle(bus, okHandler) })
	mustPanic("pointer", "not a pointer", func() {
		cqrs.Handle(bus, func(context.Context, *pong) (cqrs.Result, error) { return cqrs.Result{}, nil })
	})
	mustPanic("interface", "interface", func() {
		cqrs.Handle(bus, func(context.Context, io.Reader) (cqrs.Result, error) { return cqrs.Result{}, nil })
	})
	mustPanic("unnamed", "named type", func() {
		cqrs.Handle(bus, func(context.Context, struct{ N int }) (cqrs.Result, error) { return cqrs.Result{}, nil })
	})
	mustPanic("nil handler", "nil handler", func() { cqrs.Handle[pong](bus, nil) })
	mustPanic("nil middleware", "nil middleware", func() { bus.Use(nil) })
	mustPanic("zero decider", "zero Decider", func() {
		cqrs.Aggregate(es.NewRepository(nil, newRegistry(), newOrder, es.RepositoryConfig{}), cqrs.Decider[pong, *Order]{}, cqrs.AggregateConfig{})
	})
	mustPanic("nil decide", "nil id or decide", func() { cqrs.OnAny[pong, *Order](nil, nil) })
}

func TestHandleMisuseOptions(t *testing.T) {
	t.Parallel()
	defer func() {
		err, _ := recover().(error)
		if err == nil || !strings.Contains(err.Error(), "MaxAttempts is -1") || !strings.Contains(err.Error(), "IdempotencyWindow is -2") {
			t.Fatalf("invalid options: panic %v; want both problems", err)
		}
	}()
	repo := es.NewRepository(nil, newRegistry(), newOrder, es.RepositoryConfig{})
	cqrs.Aggregate(repo, setNote, cqrs.AggregateConfig{MaxAttempts: -1, IdempotencyWindow: -2})
}

func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var trail []string
	mark := func(name string) cqrs.Middleware {
		return func(next cqrs.Next) cqrs.Next {
			return func(ctx context.Context, cmd any) (cqrs.Result, error) {
				if _, isValue := cmd.(ping); !isValue {
					t.Errorf("middleware %s saw a %T; want the value type", name, cmd)
				}
				trail = append(trail, name+">"+cqrs.CommandName(cmd))
				res, err := next(ctx, cmd)
				trail = append(trail, "<"+name)
				return res, err
			}
		}
	}
	bus := cqrs.NewBus()
	bus.Use(mark("a"))
	cqrs.Handle(bus, func(ctx context.Context, c ping) (cqrs.Result, error) {
		trail = append(trail, "handler")
		return okHandler(ctx, c)
	})
	bus.Use(mark("b")) // after Handle: applies too
	if _, err := bus.Dispatch(t.Context(), &ping{N: 1}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trail, " "); got != "a>cqrs_test.ping b>cqrs_test.ping handler <b <a" {
		t.Fatalf("order: %s", got)
	}
}

func TestMiddlewareRefuses(t *testing.T) {
	t.Parallel()
	errForbidden := errors.New("forbidden")
	bus := cqrs.NewBus()
	bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) {
			if c, ok := cmd.(ping); ok && c.N < 0 {
				return cqrs.Result{}, errForbidden
			}
			return next(ctx, cmd)
		}
	})
	cqrs.Handle(bus, okHandler)
	if _, err := bus.Dispatch(t.Context(), ping{N: -1}); !errors.Is(err, errForbidden) {
		t.Fatalf("refused: %v", err)
	}
	if _, err := bus.Dispatch(t.Context(), ping{N: 1}); err != nil {
		t.Fatalf("allowed: %v", err)
	}
}

func TestMiddlewareChangesCommandType(t *testing.T) {
	t.Parallel()
	bus := cqrs.NewBus()
	bus.Use(func(next cqrs.Next) cqrs.Next {
		return func(ctx context.Context, cmd any) (cqrs.Result, error) { return next(ctx, pong{}) }
	})
	cqrs.Handle(bus, okHandler)
	if _, err := bus.Dispatch(t.Context(), ping{}); err == nil || !strings.Contains(err.Error(), "passed on a cqrs_test.pong") {
		t.Fatalf("middleware swapped the command: %v", err)
	}
}

// TestPanics: a panic anywhere is returned as a *PanicError naming the
// command, and nothing is appended.
func TestPanics(t *testing.T) {
	t.Parallel()
	boom := errBoom
	cases := []struct {
		name  string
		setup func(bus *cqrs.Bus, repo *es.Repository[*Order])
		cmd   any
	}{
		{"decide", func(bus *cqrs.Bus, repo *es.Repository[*Order]) {
			cqrs.Handle(bus, cqrs.Aggregate(repo, cqrs.OnNew(
				func(c PlaceOrder) string { return c.OrderID },
				func(context.Context, *Order, PlaceOrder) ([]any, error) { panic(boom) },
			), cqrs.AggregateConfig{}))
		}, PlaceOrder{OrderID: "1", Customer: "ann"}},
		{"id", func(bus *cqrs.Bus, repo *es.Repository[*Order]) {
			cqrs.Handle(bus, cqrs.Aggregate(repo, cqrs.OnNew(
				func(c PlaceOrder) string { panic(boom) },
				func(context.Context, *Order, PlaceOrder) ([]any, error) { return []any{OrderPlaced{}}, nil },
			), cqrs.AggregateConfig{}))
		}, PlaceOrder{OrderID: "1", Customer: "ann"}},
		{"validate", func(bus *cqrs.Bus, repo *es.Repository[*Order]) {
			cqrs.Handle(bus, cqrs.Aggregate(repo, cqrs.OnNew(
				func(c panicky) string { return "1" },
				func(context.Context, *Order, panicky) ([]any, error) { return []any{OrderPlaced{}}, nil },
			), cqrs.AggregateConfig{}))
		}, panicky{}},
		{"middleware", func(bus *cqrs.Bus, repo *es.Repository[*Order]) {
			bus.Use(func(next cqrs.Next) cqrs.Next {
				return func(ctx context.Context, cmd any) (cqrs.Result, error) { panic(boom) }
			})
			cqrs.Handle(bus, cqrs.Aggregate(repo, placeOrder, cqrs.AggregateConfig{}))
		}, PlaceOrder{OrderID: "1", Customer: "ann"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := &countingStore{Store: backends[0].open(t)}
			repo := es.NewRepository(store, newRegistry(), newOrder, es.RepositoryConfig{})
			bus := cqrs.NewBus()
			tc.setup(bus, repo)
			res, err := bus.Dispatch(t.Context(), tc.cmd)
			var p *cqrs.PanicError
			if !errors.As(err, &p) || !errors.Is(err, cqrs.ErrHandlerPanic) || !errors.Is(err, boom) {
				t.Fatalf("%+v, %v; want a *PanicError wrapping boom", res, err)
			}
			if p.Command != cqrs.CommandName(tc.cmd) || len(p.Stack) == 0 || res != (cqrs.Result{}) {
				t.Fatalf("panic error: %+v, result %+v", p, res)
			}
			if want := "cqrs: handle " + p.Command + ": panic: boom"; err.Error() != want {
				t.Fatalf("error %q; want %q", err, want)
			}
			if n := store.appends.Load(); n != 0 {
				t.Fatalf("%d appends after a panic", n)
			}
		})
	}
}

type panicky struct{}

var errBoom = errors.New("boom")

func (panicky) Validate() error { panic(errBoom) }

// TestHandlerCalledDirectly: an aggregate handler works outside a bus too,
// with the same metadata.
func TestHandlerCalledDirectly(t *testing.T) {
	t.Parallel()
	store := backends[0].open(t)
	repo := es.NewRepository(store, newRegistry(), newOrder, es.RepositoryConfig{})
	h := cqrs.Aggregate(repo, placeOrder, cqrs.AggregateConfig{})
	res, err := h(t.Context(), PlaceOrder{ID: "direct", OrderID: "1", Customer: "ann"})
	if err != nil || res.Version != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	md := read(t, store, "1")[0].Metadata
	if md[es.MetaCausationID] != "direct" || md[es.MetaCorrelationID] != "direct" || md[es.MetaCommandType] != "cqrs_test.PlaceOrder" {
		t.Fatalf("metadata: %v", md)
	}
}
