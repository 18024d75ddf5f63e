package app_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	ordersapp "github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/shipping"
	"github.com/stratadev/strata/examples/shipping/app"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

var quiet = slog.New(slog.DiscardHandler)

// runUntilCleanup runs run in the background until the test ends.
func runUntilCleanup(t *testing.T, name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// The two services end to end, each with its own schema: commands in the
// order service reach the shipping service's copy of the orders and become
// shipment commands there, each applied once; a message of an unknown type
// is dead-lettered and the consumers go on.
func TestOrdersReachShipping(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	name := kafkatest.Name(t)
	ctx := t.Context()
	poll := projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond}

	opool, oschema := pgtest.NewSchemaWith(t, pgtest.SchemaConfig{MaxConns: 12})
	o, err := ordersapp.New(ctx, ordersapp.Config{Pool: opool, Schema: oschema, Logger: quiet, Worker: poll,
		PollInterval: 50 * time.Millisecond, SearchOff: "off in this test",
		KafkaBrokers: []string{url}, KafkaPrefix: name + "-", KafkaTopic: name})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "orders", o.Run)

	spool, sschema := pgtest.NewSchemaWith(t, pgtest.SchemaConfig{MaxConns: 12})
	s, err := app.New(ctx, app.Config{Pool: spool, Schema: sschema, Brokers: []string{url}, Topic: name,
		CopyGroup: name + "-copy", CommandsGroup: name + "-cmd", Worker: poll, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "shipping", s.Run)

	dispatch := func(cmd any) {
		t.Helper()
		if _, err := o.Bus.Dispatch(ctx, cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	dispatch(orders.CreateProduct{ProductID: "tea", Name: "Tea", PriceCents: 450})
	place := func(id string) {
		dispatch(orders.PlaceOrder{OrderID: id, CustomerID: "c-" + id, CustomerName: "Ann",
			Lines: []orders.LineRequest{{ProductID: "tea", Quantity: 2}}})
	}
	place("o1")
	dispatch(orders.ConfirmOrder{OrderID: "o1"})
	place("o2")
	dispatch(orders.CancelOrder{OrderID: "o2", Reason: "never confirmed"}) // no shipment to cancel: a rejected command
	place("o3")
	dispatch(orders.ConfirmOrder{OrderID: "o3"})
	dispatch(orders.CancelOrder{OrderID: "o3", Reason: "changed their mind"})

	// A message of a type the shipping service does not know.
	prod := kafkatest.Client(t)
	bad := kafkasink.Envelope{ID: uuid.New(), Type: "order.teleported.v1", Source: "test"}
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: name, Key: []byte("order-o9"), Value: []byte(`{}`), Headers: bad.Headers()}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	place("o4") // after the bad message

	want := map[string][2]string{ // order status in the copy, shipment status
		"o1": {"confirmed", "requested"},
		"o2": {"cancelled", ""},
		"o3": {"cancelled", "cancelled"},
		"o4": {"placed", ""},
	}
	deadline := time.Now().Add(60 * time.Second)
	for id, w := range want {
		for {
			v, err := shipping.View(ctx, spool, sschema, id)
			var got [2]string
			if v.Order != nil {
				got[0] = v.Order.Status
			}
			if v.Shipment != nil {
				got[1] = string(v.Shipment.Status)
			}
			if err == nil && got == w {
				if v.Order.TotalCents != 900 || len(v.Order.Lines) != 1 {
					t.Errorf("%s: copy %+v; want one line of 2 tea, 900 cents", id, v.Order)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: shipping shows %v (%v); want %v", id, got, err, w)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(20 * time.Millisecond): // polling another service's read model, bounded above
			}
		}
	}

	// Each shipment command took effect once.
	for stream, n := range map[string]int{"shipment-o1": 1, "shipment-o3": 2} {
		recs, err := s.Store.ReadStream(ctx, stream, es.ReadStreamOptions{})
		if err != nil || len(recs) != n {
			t.Errorf("%s: %d events, %v; want %d", stream, len(recs), err, n)
		}
	}
	if _, err := s.Store.ReadStream(ctx, "shipment-o2", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("shipment-o2: %v; want no stream (the cancel was rejected)", err)
	}
	for _, group := range []string{name + "-copy", name + "-cmd"} {
		st, err := consume.Status(ctx, spool, sschema, group)
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadLettered != 1 || st.State != consume.StateRunning {
			t.Errorf("consumer %s: %s with %d dead-lettered; want running with 1", group, st.State, st.DeadLettered)
		}
	}
}
