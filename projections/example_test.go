package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

type OrderPlaced struct {
	Order   string `json:"order"`
	Product string `json:"product"`
}

type ProductRenamed struct {
	Product string `json:"product"`
	Name    string `json:"name"`
}

// ordersByProduct answers "which orders contain product X?" from a table
// keyed by product, and keeps product names next to it.
type ordersByProduct struct{}

func (ordersByProduct) Name() string      { return "orders_by_product" }
func (ordersByProduct) Handles() []string { return []string{"OrderPlaced", "ProductRenamed"} }

func (ordersByProduct) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		switch e := ev.Data.(type) {
		case OrderPlaced:
			orders, _ := tx.Get("orders", e.Product)
			list, _ := orders.([]string)
			tx.Put("orders", e.Product, append(slices.Clone(list), e.Order))
		case ProductRenamed:
			tx.Put("names", e.Product, e.Name)
		}
	}
	return nil
}

func Example() {
	ctx := context.Background()
	store, sink := memstore.New(), memsink.New()
	reg := es.NewRegistry()
	es.Register[OrderPlaced](reg, "OrderPlaced")
	es.Register[ProductRenamed](reg, "ProductRenamed")

	w := projections.NewWorker(store, reg, sink, ordersByProduct{},
		projections.Config{Logger: slog.New(slog.DiscardHandler)})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()

	for _, ev := range []any{
		OrderPlaced{Order: "o-1", Product: "tea"},
		OrderPlaced{Order: "o-2", Product: "tea"},
		ProductRenamed{Product: "tea", Name: "Green tea"},
	} {
		data, err := reg.Encode(ev, nil)
		if err != nil {
			panic(err)
		}
		res, err := store.Append(ctx, "shop", es.Any, data)
		if err != nil {
			panic(err)
		}
		// Read your writes: wait until the projection has seen the append.
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = projections.WaitFor(wait, sink, w.Name(), res.Position)
		cancel()
		if err != nil {
			panic(err)
		}
	}
	fmt.Println("orders with tea:", sink.Rows("orders")["tea"])
	fmt.Println("tea is called:", sink.Rows("names")["tea"])

	st, err := projections.ReadStatus(ctx, projections.StatusOptions{Store: store, Checkpoints: sink}, w.Name())
	if err != nil {
		panic(err)
	}
	fmt.Println("state:", st.State, "lag:", st.LagEvents)

	stop()
	fmt.Println("run:", <-done)
	// Output:
	// orders with tea: [o-1 o-2]
	// tea is called: Green tea
	// state: running lag: 0
	// run: <nil>
}
