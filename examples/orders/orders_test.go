package orders_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/cqrstest"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/examples/orders"
)

// catalog is a Catalog of fixed products.
type catalog map[string]*orders.Product

func (c catalog) Product(_ context.Context, id string) (*orders.Product, error) {
	if p, ok := c[id]; ok {
		return p, nil
	}
	return nil, orders.ErrUnknownProduct
}

var testCatalog = catalog{
	"tea":    {ID: "tea", Created: true, Name: "Tea", PriceCents: 450},
	"cup":    {ID: "cup", Created: true, Name: "Cup", PriceCents: 1200},
	"kettle": {ID: "kettle", Created: true, Name: "Kettle", PriceCents: 3000, Discontinued: true},
}

var placed = orders.OrderPlaced{OrderID: "o1", CustomerID: "c1", CustomerName: "Ann",
	Lines: []orders.Line{{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}}}

func TestPlaceOrderTakesCatalogPrices(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.PlaceOrderDecider(testCatalog)).
		When(orders.PlaceOrder{OrderID: "o1", CustomerID: "c1", CustomerName: "Ann",
			Lines: []orders.LineRequest{{ProductID: "tea", Quantity: 2}}}).
		Then(placed)
}

func TestPlaceOrderRefusesUnknownAndDiscontinuedProducts(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]error{"nope": orders.ErrUnknownProduct, "kettle": orders.ErrProductDiscontinued} {
		cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.PlaceOrderDecider(testCatalog)).
			When(orders.PlaceOrder{OrderID: "o1", CustomerID: "c1", CustomerName: "Ann",
				Lines: []orders.LineRequest{{ProductID: id, Quantity: 1}}}).
			ThenError(want)
	}
}

func TestPlaceOrderValidation(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.PlaceOrderDecider(testCatalog)).
		When(orders.PlaceOrder{OrderID: "o1", CustomerID: "c1", CustomerName: " ",
			Lines: []orders.LineRequest{{ProductID: "tea", Quantity: -1}}}).
		ThenError(cqrs.ErrInvalidCommand)
}

func TestAddItemMergesLineAtItsPrice(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.AddItemDecider(testCatalog)).
		Given(placed).
		When(orders.AddItem{OrderID: "o1", ProductID: "tea", Quantity: 1}).
		Then(orders.ItemAdded{OrderID: "o1", Line: orders.Line{ProductID: "tea", Quantity: 1, UnitPriceCents: 450}})
}

func TestNoChangesAfterCancel(t *testing.T) {
	t.Parallel()
	cancelled := orders.OrderCancelled{OrderID: "o1"}
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.AddItemDecider(testCatalog)).
		Given(placed, cancelled).
		When(orders.AddItem{OrderID: "o1", ProductID: "cup", Quantity: 1}).
		ThenError(orders.ErrOrderCancelled)
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.ConfirmOrderDecider).
		Given(placed, cancelled).
		When(orders.ConfirmOrder{OrderID: "o1"}).
		ThenError(orders.ErrOrderCancelled)
}

func TestCancelNotAfterShipping(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.CancelOrderDecider).
		Given(placed, orders.OrderConfirmed{OrderID: "o1"}, orders.OrderPaid{OrderID: "o1", AmountCents: 900}, orders.OrderShipped{OrderID: "o1"}).
		When(orders.CancelOrder{OrderID: "o1"}).
		ThenError(orders.ErrOrderShipped)
}

func TestPayNeedsTheTotal(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.PayOrderDecider).
		Given(placed, orders.OrderConfirmed{OrderID: "o1"}).
		When(orders.PayOrder{OrderID: "o1", AmountCents: 899}).
		ThenError(orders.ErrAmountMismatch)
}

func TestRemoveLastItemRefused(t *testing.T) {
	t.Parallel()
	cqrstest.For(t, orders.NewRegistry(), orders.NewOrder, orders.RemoveItemDecider).
		Given(placed).
		When(orders.RemoveItem{OrderID: "o1", ProductID: "tea"}).
		ThenError(orders.ErrLastItem)
}

func TestUpcastOrderPlacedV1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memstore.New()
	reg := orders.NewRegistry()
	v1 := `{"order_id":"o1","customer":"Ann","items":[{"product_id":"tea","qty":2,"unit_price":"4.5"},{"product_id":"cup","qty":1,"unit_price":"12.00"}]}`
	if _, err := store.Append(ctx, "order-o1", es.NoStream, es.EventData{Type: orders.TypeOrderPlacedV1, Data: []byte(v1)}); err != nil {
		t.Fatal(err)
	}
	repo := orders.NewRepositories(store, reg).Orders
	root, err := repo.Load(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	o := root.State
	if o.Status != orders.StatusPlaced || o.CustomerID != "legacy:Ann" || len(o.Lines) != 2 ||
		o.Lines[0] != (orders.Line{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}) || o.Total() != 2100 {
		t.Fatalf("upcast order: %+v", o)
	}

	_, _, err = orders.UpcastOrderPlacedV1([]byte(`{"order_id":"o1","customer":"Ann","items":[{"product_id":"tea","qty":2,"unit_price":"4.505"}]}`))
	if err == nil {
		t.Fatal("upcast of a price with three decimals succeeded")
	}
	recs, _ := store.ReadStream(ctx, "order-o1", es.ReadStreamOptions{})
	recs[0].Data = []byte(`{"order_id":"o1","customer":"Ann","items":[{"product_id":"tea","qty":2,"unit_price":"x"}]}`)
	if _, err := reg.Decode(recs[0]); !errors.Is(err, es.ErrDecode) {
		t.Fatalf("decode of a bad v1 price: %v, want ErrDecode", err)
	}
}
