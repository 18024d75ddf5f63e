package kafkasink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/pgsink"
)

// OrderPlaced is a domain event: internal to the order service, free to
// change.
type OrderPlaced struct {
	Order string `json:"order"`
	Lines []struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	} `json:"lines"`
	TotalCents int64 `json:"total_cents"`
}

// OrderPlacedV1 is the integration event other services read: public and
// versioned; a breaking change is a new type, order.placed.v2.
type OrderPlacedV1 struct {
	OrderID    string `json:"order_id"`
	Items      int    `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// orderFeed publishes the order events other services need.
type orderFeed struct{ topic string }

func (orderFeed) Name() string      { return "order_feed" }
func (orderFeed) Handles() []string { return []string{"OrderPlaced"} }

func (f orderFeed) HandleBatch(ctx context.Context, tx *kafkasink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(OrderPlaced)
		items := 0
		for _, l := range e.Lines {
			items += l.Qty
		}
		v, err := json.Marshal(OrderPlacedV1{OrderID: e.Order, Items: items, TotalCents: e.TotalCents})
		if err != nil {
			return err
		}
		// Keyed by the stream: one order's messages stay in order.
		if err := tx.Publish(f.topic, ev, "order.placed.v1", v); err != nil {
			return err
		}
	}
	return nil
}

func Example() {
	ctx := context.Background()
	pool, brokers, name, done := exampleServers(ctx) // your own pool and cluster
	defer done()
	reg := es.NewRegistry()
	es.Register[OrderPlaced](reg, "OrderPlaced")
	feed := orderFeed{topic: name}

	store := pgstore.New(pool, pgstore.Config{Schema: name, Logger: quiet})
	pg := pgsink.New(pool, pgsink.Config{Schema: name, Logger: quiet}) // state, leases, dead letters
	if _, err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := pg.Migrate(ctx); err != nil {
		panic(err)
	}
	sink := kafkasink.New(pg, kafkasink.Config{
		Brokers: brokers, Topics: []kafkasink.Topic{{Name: feed.topic, Partitions: 3}}, CreateTopics: true,
		TransactionalIDPrefix: name + "-", CheckpointTopic: name + "-checkpoints", Logger: quiet,
	})
	defer sink.Close()

	var last es.AppendResult
	for i, order := range []string{"order-1", "order-2"} {
		data, err := reg.Encode(OrderPlaced{Order: order, TotalCents: int64(1000 * (i + 1)), Lines: []struct {
			SKU string `json:"sku"`
			Qty int    `json:"qty"`
		}{{"tea", i + 1}}}, nil)
		if err != nil {
			panic(err)
		}
		if last, err = store.Append(ctx, order, es.NoStream, data); err != nil {
			panic(err)
		}
	}

	w := kafkasink.NewWorker(store, reg, sink, feed, projections.Config{Logger: quiet})
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := projections.WaitFor(wait, pg, feed.Name(), last.Position); err != nil {
		panic(err)
	}
	stop()
	fmt.Println("worker stopped:", <-stopped)

	// Another service reads the topic with read_committed.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(feed.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	got := map[string]string{}
	for len(got) < 2 {
		cl.PollFetches(wait).EachRecord(func(r *kgo.Record) {
			env, err := kafkasink.ParseHeaders(r.Headers)
			if err != nil {
				panic(err)
			}
			got[string(r.Key)] = fmt.Sprintf("%s %s %s", env.Type, env.Subject, r.Value)
		})
	}
	fmt.Println(got["order-1"])
	fmt.Println(got["order-2"])
	// Output:
	// worker stopped: <nil>
	// order.placed.v1 order-1 {"order_id":"order-1","items":1,"total_cents":1000}
	// order.placed.v1 order-2 {"order_id":"order-2","items":2,"total_cents":2000}
}

// exampleServers returns a pool on TEST_DATABASE_URL, the brokers of
// TEST_KAFKA_URL, a fresh name for the schema, the topics and the
// transactional IDs, and a function that removes what the example made.
func exampleServers(ctx context.Context) (*pgxpool.Pool, []string, string, func()) {
	pool, err := pgxpool.New(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	brokers := []string{os.Getenv("TEST_KAFKA_URL")}
	b := make([]byte, 6)
	rand.Read(b)
	name := "example_" + hex.EncodeToString(b)
	return pool, brokers, name, func() {
		if cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...)); err == nil {
			kadm.NewClient(cl).DeleteTopics(context.Background(), name, name+"-checkpoints")
			cl.Close()
		}
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			panic(err)
		}
		pool.Close()
	}
}
