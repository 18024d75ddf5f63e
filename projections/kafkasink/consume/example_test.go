package consume_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
)

// The shipping service's side: an order placed elsewhere becomes a
// shipment here.

type shipment struct{ Items int }

func (s *shipment) Apply(event any) error {
	s.Items += event.(ShipmentPlanned).Items
	return nil
}

type ShipmentPlanned struct{ Items int }

type PlanShipment struct {
	ID    string `json:"-"` // the message's CommandID
	Order string
	Items int
}

func (c PlanShipment) CommandID() string { return c.ID }

var planShipment = cqrs.OnNew(func(c PlanShipment) string { return c.Order },
	func(_ context.Context, _ *shipment, c PlanShipment) ([]any, error) {
		return []any{ShipmentPlanned{Items: c.Items}}, nil
	})

func Example() {
	ctx := context.Background()
	pool, brokers, name, done := exampleServers(ctx) // your own pool and brokers
	defer done()

	store := pgstore.New(pool, pgstore.Config{Schema: name, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	reg := es.NewRegistry()
	es.Register[ShipmentPlanned](reg, "ShipmentPlanned")
	shipments := es.NewRepository(store, reg, func(string) *shipment { return &shipment{} }, es.RepositoryConfig{StreamPrefix: "shipment-"})
	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(shipments, planShipment, cqrs.AggregateConfig{}))

	// The other service published two orders, the first one twice.
	first, second := uuid.New(), uuid.New()
	publish(ctx, brokers, name, first, `{"order":"o-1","items":2}`)
	publish(ctx, brokers, name, first, `{"order":"o-1","items":2}`)
	publish(ctx, brokers, name, second, `{"order":"o-2","items":5}`)

	consumer, err := consume.NewCommands(consume.Config{
		Brokers: brokers, Group: name, Topics: []string{name}, Pool: pool, Schema: name, Logger: quiet,
	}, bus, func(ctx context.Context, msg consume.Message) (any, error) {
		var placed struct {
			Order string `json:"order"`
			Items int    `json:"items"`
		}
		if err := json.Unmarshal(msg.Value, &placed); err != nil {
			return nil, err
		}
		return PlanShipment{ID: msg.CommandID(), Order: placed.Order, Items: placed.Items}, nil
	})
	if err != nil {
		panic(err)
	}
	rctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- consumer.Run(rctx) }()
	// Wait for the shipments' two events.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n := 0
	for batch, err := range store.Subscribe(wctx, es.SubscribeOptions{}) {
		if err != nil {
			panic(err)
		}
		if n += len(batch); n == 2 {
			break
		}
	}
	stop()
	fmt.Println("consumer stopped:", <-stopped)

	for _, order := range []string{"o-1", "o-2"} {
		s, err := shipments.Load(ctx, order)
		if err != nil {
			panic(err)
		}
		fmt.Printf("shipment %s: %d items, version %d\n", order, s.State.Items, s.Version)
	}
	st, err := consume.Status(ctx, pool, name, name)
	if err != nil {
		panic(err)
	}
	fmt.Println("status:", st.State, "next offset:", st.Partitions[0].NextOffset)
	// Output:
	// consumer stopped: <nil>
	// shipment o-1: 2 items, version 1
	// shipment o-2: 5 items, version 1
	// status: stopped next offset: 3
}

func publish(ctx context.Context, brokers []string, topic string, id uuid.UUID, value string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	env := kafkasink.Envelope{ID: id, Type: "order.placed.v1", Source: "orders"}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value), Headers: env.Headers()}).FirstErr(); err != nil {
		panic(err)
	}
}

// exampleServers returns a pool on TEST_DATABASE_URL, the brokers of
// TEST_KAFKA_URL, a fresh name for the schema, the topic and the group, and
// a function that removes what the example made.
func exampleServers(ctx context.Context) (*pgxpool.Pool, []string, string, func()) {
	pool, err := pgxpool.New(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	brokers := []string{os.Getenv("TEST_KAFKA_URL")}
	b := make([]byte, 6)
	rand.Read(b)
	name := "example_" + hex.EncodeToString(b)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, name); err != nil {
		panic(err)
	}
	return pool, brokers, name, func() {
		adm.DeleteTopic(ctx, name)
		adm.DeleteGroup(ctx, name)
		cl.Close()
		pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
		pool.Close()
	}
}
