package es_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
)

// An aggregate is loaded by replaying its stream and saved with the version
// it was loaded at, so concurrent writers cannot overwrite each other.
func ExampleRepository() {
	ctx := context.Background()

	registry := es.NewRegistry()
	es.Register[itemAdded](registry, "ItemAdded")
	es.Register[itemRemoved](registry, "ItemRemoved")

	store := memstore.New()
	carts := es.NewRepository(store, registry, newCart, es.RepositoryConfig{StreamPrefix: "cart-"})

	cart, _ := carts.Load(ctx, "42")
	res, err := carts.Save(ctx, cart, []any{itemAdded{SKU: "tea", Quantity: 2}}, es.SaveOptions{})
	fmt.Println(res.Stream, res.Version, err)

	stale, _ := carts.Load(ctx, "42")
	_, _ = carts.Save(ctx, cart, []any{itemRemoved{SKU: "tea"}}, es.SaveOptions{})
	_, err = carts.Save(ctx, stale, []any{itemAdded{SKU: "milk", Quantity: 1}}, es.SaveOptions{})
	fmt.Println(err)

	cart, _ = carts.Load(ctx, "42")
	fmt.Println(cart.Version, cart.State.Items)
	// Output:
	// cart-42 1 <nil>
	// es: append to cart-42: wrong expected version: expected 1, stream is at version 2
	// 2 map[]
}

// Upcasters rewrite events stored in an old shape while they are read, so
// aggregates and projections only know the current one.
func ExampleRegistry_Upcast() {
	registry := es.NewRegistry()
	es.Register[itemAdded](registry, "ItemAdded")
	registry.Upcast("ItemAdded.v1", func(data json.RawMessage) (string, json.RawMessage, error) {
		// v1 had no quantity: it always meant one.
		return "ItemAdded", append(data[:len(data)-1], `,"quantity":1}`...), nil
	})

	event, err := registry.Decode(es.Record{Stream: "cart-7", Version: 1, Type: "ItemAdded.v1", Data: []byte(`{"sku":"tea"}`)})
	fmt.Printf("%+v %v\n", event, err)
	// Output:
	// {SKU:tea Quantity:1} <nil>
}
