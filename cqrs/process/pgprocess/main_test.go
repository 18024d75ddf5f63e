package pgprocess_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestMain(m *testing.M) {
	if os.Getenv(envCrashSchema) != "" {
		os.Exit(runUntilKilled())
	}
	pgtest.Main(m)
}

var quiet = slog.New(slog.DiscardHandler)

// The domain of the tests: an order is paid, then confirmed; a declined
// payment or one that does not come in time cancels it.

type OrderPlaced struct {
	OrderID   string
	Amount    int
	PayWithin time.Duration // 0: no payment deadline
	Manual    bool          // the payment is not asked for by the process
}
type OrderConfirmed struct{ OrderID string }
type OrderCancelled struct{ OrderID, Reason string }
type PaymentCaptured struct {
	OrderID string
	Amount  int
}
type Note struct{ Text string } // handled, correlates to nothing

type PlaceOrder OrderPlaced
type CapturePayment struct {
	process.ID
	OrderID string
	Amount  int
}
type ConfirmOrder struct {
	process.ID
	OrderID string
}
type CancelOrder struct {
	process.ID
	OrderID, Reason string
}
type WriteNote struct{ Text string }

type order struct{ Status string }

func (o *order) Apply(ev any) error {
	switch ev.(type) {
	case OrderPlaced:
		o.Status = "placed"
	case OrderConfirmed:
		o.Status = "confirmed"
	case OrderCancelled:
		o.Status = "cancelled"
	}
	return nil
}

type payment struct{ Captured bool }

func (p *payment) Apply(ev any) error { p.Captured = true; return nil }

type note struct{}

func (note) Apply(any) error { return nil }

var errDeclined = errors.New("payment declined")

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[OrderPlaced](reg, "OrderPlaced")
	es.Register[OrderConfirmed](reg, "OrderConfirmed")
	es.Register[OrderCancelled](reg, "OrderCancelled")
	es.Register[PaymentCaptured](reg, "PaymentCaptured")
	es.Register[Note](reg, "Note")
	return reg
}

func newCommands() *process.Commands {
	cmds := &process.Commands{}
	process.RegisterCommand[CapturePayment](cmds)
	process.RegisterCommand[ConfirmOrder](cmds)
	process.RegisterCommand[CancelOrder](cmds)
	return cmds
}

// newBus wires the command handlers to store. Amounts above 100 are
// declined.
func newBus(store es.Store, reg *es.Registry) *cqrs.Bus {
	orders := es.NewRepository(store, reg, func(string) *order { return &order{} }, es.RepositoryConfig{StreamPrefix: "order-"})
	payments := es.NewRepository(store, reg, func(string) *payment { return &payment{} }, es.RepositoryConfig{StreamPrefix: "payment-"})
	notes := es.NewRepository(store, reg, func(string) *note { return &note{} }, es.RepositoryConfig{StreamPrefix: "note-"})
	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(orders, cqrs.OnNew(func(c PlaceOrder) string { return c.OrderID },
		func(_ context.Context, _ *order, c PlaceOrder) ([]any, error) { return []any{OrderPlaced(c)}, nil }), cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(orders, cqrs.OnExisting(func(c ConfirmOrder) string { return c.OrderID },
		func(_ context.Context, _ *order, c ConfirmOrder) ([]any, error) {
			return []any{OrderConfirmed{OrderID: c.OrderID}}, nil
		}), cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(orders, cqrs.OnExisting(func(c CancelOrder) string { return c.OrderID },
		func(_ context.Context, _ *order, c CancelOrder) ([]any, error) {
			return []any{OrderCancelled{OrderID: c.OrderID, Reason: c.Reason}}, nil
		}), cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(payments, cqrs.OnNew(func(c CapturePayment) string { return c.OrderID },
		func(_ context.Context, _ *payment, c CapturePayment) ([]any, error) {
			if c.Amount > 100 {
				return nil, errDeclined
			}
			return []any{PaymentCaptured{OrderID: c.OrderID, Amount: c.Amount}}, nil
		}), cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(notes, cqrs.OnAny(func(c WriteNote) string { return "n" },
		func(_ context.Context, _ *note, c WriteNote) ([]any, error) { return []any{Note(c)}, nil }), cqrs.AggregateConfig{}))
	return bus
}

type checkoutState struct {
	OrderID string
	Amount  int
}

// checkout is the process manager under test.
type checkout struct{}

func (checkout) Name() string { return "checkout" }
func (checkout) Handles() []string {
	return []string{"OrderPlaced", "OrderConfirmed", "OrderCancelled", "PaymentCaptured", "Note"}
}

func (checkout) Correlate(ev projections.Event) (string, bool) {
	switch e := ev.Data.(type) {
	case OrderPlaced:
		return e.OrderID, true
	case OrderConfirmed:
		return e.OrderID, true
	case OrderCancelled:
		return e.OrderID, true
	case PaymentCaptured:
		return e.OrderID, true
	}
	return "", false
}

type decision = process.Decision[checkoutState]

func (checkout) Decide(s checkoutState, in process.Input) (decision, error) {
	switch in := in.(type) {
	case process.EventReceived:
		switch e := in.Event.Data.(type) {
		case OrderPlaced:
			s = checkoutState{OrderID: e.OrderID, Amount: e.Amount}
			d := decision{State: s}
			if !e.Manual {
				d.Commands = []any{CapturePayment{OrderID: e.OrderID, Amount: e.Amount}}
			}
			if e.PayWithin > 0 {
				d.Deadlines = []process.Deadline{{Name: "payment", After: e.PayWithin}}
			}
			return d, nil
		case PaymentCaptured:
			return decision{State: s, Commands: []any{ConfirmOrder{OrderID: s.OrderID}}, Cancel: []string{"payment"}}, nil
		case OrderConfirmed, OrderCancelled:
			return decision{State: s, Done: true}, nil
		}
	case process.DeadlineFired:
		return decision{State: s, Commands: []any{CancelOrder{OrderID: s.OrderID, Reason: "timeout"}}}, nil
	case process.CommandRejected:
		if c, ok := in.Command.(CapturePayment); ok && errors.Is(in.Err, errDeclined) {
			return decision{State: s, Commands: []any{CancelOrder{OrderID: c.OrderID, Reason: "declined"}}}, nil
		}
	}
	return decision{}, fmt.Errorf("checkout: unexpected input %T", in)
}

type env struct {
	pool  *pgxpool.Pool
	store *pgstore.Store
	sink  *pgsink.Sink
	reg   *es.Registry
	bus   *cqrs.Bus
}

func newEnv(t *testing.T) env {
	t.Helper()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 24})
	return openEnv(t, pool, schema)
}

func openEnv(t testing.TB, pool *pgxpool.Pool, schema string) env {
	t.Helper()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	if _, err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	if _, err := sink.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := pgprocess.Migrate(context.Background(), sink); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	return env{pool: pool, store: store, sink: sink, reg: reg, bus: newBus(store, reg)}
}

func (e env) runner(cfg pgprocess.Config) *pgprocess.Runner {
	cfg.Logger = cmpOr(cfg.Logger, quiet)
	cfg.PollInterval = cmpOr(cfg.PollInterval, 100*time.Millisecond)
	cfg.Worker.PollInterval = cmpOr(cfg.Worker.PollInterval, 50*time.Millisecond)
	return pgprocess.New(e.store, e.reg, e.sink, e.bus, process.Define(checkout{}), newCommands(), cfg)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// start runs r until the test ends, and fails the test if Run fails.
func start(t *testing.T, r *pgprocess.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (e env) place(t *testing.T, o PlaceOrder) {
	t.Helper()
	if _, err := e.bus.Dispatch(t.Context(), o); err != nil {
		t.Fatalf("place order %s: %v", o.OrderID, err)
	}
}

// waitForEnd waits, on the log, for the order's stream to end with
// OrderConfirmed or OrderCancelled, then for the process to have seen that
// event, and returns the stream's event types.
func (e env) waitForEnd(t *testing.T, orderID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for recs, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatalf("wait for the end of order %s: %v", orderID, err)
		}
		for _, rec := range recs {
			if rec.Stream == "order-"+orderID && (rec.Type == "OrderConfirmed" || rec.Type == "OrderCancelled") {
				if err := projections.WaitFor(ctx, e.sink, pgprocess.ProjectionPrefix+"checkout", rec.Position); err != nil {
					t.Fatalf("wait for the process to see %s: %v", rec.Type, err)
				}
				return e.types(t, "order-"+orderID)
			}
		}
	}
	t.Fatalf("order %s did not end", orderID)
	return nil
}

func (e env) types(t *testing.T, stream string) []string {
	t.Helper()
	recs, err := e.store.ReadStream(t.Context(), stream, es.ReadStreamOptions{})
	if errors.Is(err, es.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Type
	}
	return out
}

func (e env) query(t *testing.T, sql string, args ...any) pgx.Row {
	t.Helper()
	return e.pool.QueryRow(t.Context(), strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{e.sink.Schema()}.Sanitize()), args...)
}

func (e env) instance(t *testing.T, id string) pgprocess.Instance {
	t.Helper()
	in, err := pgprocess.ReadInstance(t.Context(), e.sink, "checkout", id)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func pgxIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
