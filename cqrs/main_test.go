package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// TestMain starts a throwaway PostgreSQL server unless TEST_DATABASE_URL is
// set, and checks for leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }

// The test domain: an order with items, a note and a confirmation.

type Order struct {
	ID        string
	Customer  string
	Items     map[string]int
	Note      string
	Confirmed bool
}

func newOrder(id string) *Order { return &Order{ID: id, Items: map[string]int{}} }

func (o *Order) Apply(event any) error {
	switch e := event.(type) {
	case OrderPlaced:
		o.Customer = e.Customer
	case ItemAdded:
		o.Items[e.SKU] += e.Quantity
	case NoteSet:
		o.Note = e.Note
	case OrderConfirmed:
		o.Confirmed = true
	case Unrelated:
	default:
		return fmt.Errorf("order: unexpected event %T", event)
	}
	return nil
}

type (
	OrderPlaced struct{ OrderID, Customer string }
	ItemAdded   struct {
		OrderID, SKU string
		Quantity     int
	}
	NoteSet        struct{ OrderID, Note string }
	OrderConfirmed struct{ OrderID string }
	Unrelated      struct{ N int } // written by "other writers" in conflict tests
)

func newRegistry() *es.Registry {
	r := es.NewRegistry()
	es.Register[OrderPlaced](r, "OrderPlaced")
	es.Register[ItemAdded](r, "ItemAdded")
	es.Register[NoteSet](r, "NoteSet")
	es.Register[OrderConfirmed](r, "OrderConfirmed")
	es.Register[Unrelated](r, "Unrelated")
	return r
}

var ErrOrderConfirmed = errors.New("order is confirmed")

// Commands. The ID field is the optional idempotency key.

type PlaceOrder struct{ ID, OrderID, Customer string }

func (c PlaceOrder) CommandID() string { return c.ID }

func (c PlaceOrder) Validate() error {
	return errors.Join(
		cqrs.Check(c.OrderID != "", "OrderID", "is required"),
		cqrs.Check(c.Customer != "", "Customer", "is required"),
	)
}

type AddItem struct {
	ID, OrderID, SKU string
	Quantity         int
}

func (c AddItem) CommandID() string { return c.ID }

func (c AddItem) Validate() error {
	return errors.Join(
		cqrs.Check(c.OrderID != "", "OrderID", "is required"),
		cqrs.Check(c.SKU != "", "SKU", "is required"),
		cqrs.Check(c.Quantity > 0, "Quantity", "must be positive"),
	)
}

type SetNote struct{ ID, OrderID, Note string }

func (c SetNote) CommandID() string { return c.ID }

type ConfirmOrder struct{ ID, OrderID string }

// CommandID has a pointer receiver on purpose: it must work too.
func (c *ConfirmOrder) CommandID() string { return c.ID }

// The deciders, shared by the bus and the cqrstest tests.

var placeOrder = cqrs.OnNew(
	func(c PlaceOrder) string { return c.OrderID },
	func(_ context.Context, o *Order, c PlaceOrder) ([]any, error) {
		return []any{OrderPlaced{OrderID: c.OrderID, Customer: c.Customer}}, nil
	})

var addItem = cqrs.OnExisting(
	func(c AddItem) string { return c.OrderID },
	func(_ context.Context, o *Order, c AddItem) ([]any, error) {
		if o.Confirmed {
			return nil, ErrOrderConfirmed
		}
		return []any{ItemAdded{OrderID: c.OrderID, SKU: c.SKU, Quantity: c.Quantity}}, nil
	})

// setNote creates or changes an order; setting the same note again is a
// no-op.
var setNote = cqrs.OnAny(
	func(c SetNote) string { return c.OrderID },
	func(_ context.Context, o *Order, c SetNote) ([]any, error) {
		if o.Note == c.Note {
			return nil, nil
		}
		return []any{NoteSet{OrderID: c.OrderID, Note: c.Note}}, nil
	})

var confirmOrder = cqrs.OnExisting(
	func(c ConfirmOrder) string { return c.OrderID },
	func(_ context.Context, o *Order, c ConfirmOrder) ([]any, error) {
		if o.Confirmed {
			return nil, ErrOrderConfirmed
		}
		return []any{OrderConfirmed{OrderID: c.OrderID}, NoteSet{OrderID: c.OrderID, Note: "confirmed"}}, nil
	})

// backends are the stores every store-dependent test runs against.
var backends = []struct {
	name string
	open func(t *testing.T) es.Store
}{
	{"memstore", func(*testing.T) es.Store { return memstore.New() }},
	{"pgstore", func(t *testing.T) es.Store {
		pool, schema := pgtest.NewSchema(t)
		s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// forEachStore runs f in a parallel subtest per backend.
func forEachStore(t *testing.T, f func(t *testing.T, store es.Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.open(t))
		})
	}
}

// app is a bus with the order handlers on a store.
type app struct {
	store es.Store
	repo  *es.Repository[*Order]
	bus   *cqrs.Bus
}

func newApp(store es.Store, opts cqrs.AggregateConfig) *app {
	repo := es.NewRepository(store, newRegistry(), newOrder, es.RepositoryConfig{StreamPrefix: "order-"})
	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(repo, placeOrder, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repo, addItem, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repo, setNote, opts))
	cqrs.Handle(bus, cqrs.Aggregate(repo, confirmOrder, opts))
	return &app{store: store, repo: repo, bus: bus}
}

func (a *app) mustDispatch(t *testing.T, cmd any) cqrs.Result {
	t.Helper()
	res, err := a.bus.Dispatch(t.Context(), cmd)
	if err != nil {
		t.Fatalf("dispatch %T: %v", cmd, err)
	}
	return res
}

// read returns the records of a stream, or none.
func read(t *testing.T, store es.Store, stream string) []es.Record {
	t.Helper()
	recs, err := store.ReadStream(t.Context(), stream, es.ReadStreamOptions{})
	if errors.Is(err, es.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return recs
}

func types(recs []es.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Type
	}
	return out
}

// together runs f(0) … f(n-1) in n goroutines released at the same moment,
// and returns when all are done.
func together(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// countingStore wraps a real store and counts the calls that read or write
// streams.
type countingStore struct {
	es.Store
	appends, reads atomic.Int64
}

func (c *countingStore) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	c.appends.Add(1)
	return c.Store.Append(ctx, stream, expected, events...)
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	c.reads.Add(1)
	return c.Store.ReadStream(ctx, stream, opts)
}

// interferingStore wraps a real store; before each of the first n appends to
// a stream it appends an Unrelated event to that stream itself, the way a
// concurrent writer would, so the wrapped append meets a version conflict.
type interferingStore struct {
	es.Store
	n          atomic.Int64
	interfered atomic.Int64
}

func (s *interferingStore) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	if s.interfered.Add(1) <= s.n.Load() {
		data := []byte(fmt.Sprintf(`{"N":%d}`, s.interfered.Load()))
		if _, err := s.Store.Append(ctx, stream, es.Any, es.EventData{Type: "Unrelated", Data: data}); err != nil {
			return es.AppendResult{}, err
		}
	}
	return s.Store.Append(ctx, stream, expected, events...)
}
