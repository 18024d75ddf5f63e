package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
)

func Example() {
	ctx := context.Background()
	store := memstore.New()

	// Append two events to a new stream.
	res, err := store.Append(ctx, "order-42", es.NoStream,
		es.EventData{Type: "OrderPlaced", Data: []byte(`{"customer":"ada"}`)},
		es.EventData{Type: "LineItemAdded", Data: []byte(`{"product":"p-7","qty":2}`)},
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("appended: version", res.Version, "at", res.Position)

	// A writer that decided on stale state gets a conflict.
	_, err = store.Append(ctx, "order-42", es.NoStream, es.EventData{Type: "OrderPlaced", Data: []byte(`{}`)})
	fmt.Println("conflict:", errors.Is(err, es.ErrWrongExpectedVersion))

	// Read the stream back.
	recs, err := store.ReadStream(ctx, "order-42", es.ReadStreamOptions{})
	if err != nil {
		panic(err)
	}
	for _, r := range recs {
		fmt.Printf("read: %s@%d %s %s\n", r.Stream, r.Version, r.Type, r.Data)
	}

	// Subscribe to the global log: first what is stored, then new events as
	// they are appended. Here the consumer appends one itself once caught up.
	for batch, err := range store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			panic(err)
		}
		for _, r := range batch {
			fmt.Printf("subscribed: %s %s@%d %s\n", r.Position, r.Stream, r.Version, r.Type)
		}
		last := batch[len(batch)-1]
		if last.Position == res.Position {
			_, err := store.Append(ctx, "order-42", es.Exact(2), es.EventData{Type: "OrderShipped", Data: []byte(`{}`)})
			if err != nil {
				panic(err)
			}
		}
		if last.Type == "OrderShipped" {
			break
		}
	}
	// Output:
	// appended: version 2 at 2:2
	// conflict: true
	// read: order-42@1 OrderPlaced {"customer":"ada"}
	// read: order-42@2 LineItemAdded {"product":"p-7","qty":2}
	// subscribed: 1:1 order-42@1 OrderPlaced
	// subscribed: 2:2 order-42@2 LineItemAdded
	// subscribed: 3:3 order-42@3 OrderShipped
}
