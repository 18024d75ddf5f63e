package kafkasink_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
	"github.com/stratadev/strata/projections/pgsink"
)

// benchEvents is how many events BenchmarkPublish publishes: 100,000
// unless STRATA_BENCH_EVENTS says otherwise.
func benchEvents(b *testing.B) int {
	n := 100_000
	if s := os.Getenv("STRATA_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("STRATA_BENCH_EVENTS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// benchStreams is how many streams (and so message keys) the events are
// spread over.
const benchStreams = 1000

// BenchmarkPublish publishes the events of a log to a topic of 6
// partitions, with strata and with a raw producer, by turns (one run of
// each per iteration, the order rotating), each run to a topic of its own:
//
//   - strata runs a worker with kafkasink from the start of the log until
//     its checkpoint is at the head: "defaults" with zero Configs (batches
//     of kafkasink.BatchSizeDefault, 5000 events, the sink's advice), the
//     other with the batch size in its name; each batch is one Kafka
//     transaction with its checkpoint, then the keeper's copy of the
//     checkpoint in PostgreSQL;
//   - raw reads the log as the worker does (Subscribe, decoded by the
//     registry), makes the same records (the same integration event
//     values, keys and CloudEvents headers) and produces them with one
//     idempotent franz-go producer (acks=all, the same linger), without
//     transactions or checkpoints, and flushes once at the end;
//   - rawtxn does what raw does in one transaction per batch of strata's
//     size (flush, commit), without checkpoints or PostgreSQL.
//
// It reports each side's events/s over all its runs, strata/raw and
// strata/rawtxn, the ratios of those totals, and the events per
// transaction.
func BenchmarkPublish(b *testing.B) {
	url := kafkatest.URL(b)
	n := benchEvents(b)
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 8})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	pg := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := pg.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	res, err := store.Import(b.Context(), benchLog(n))
	if err != nil {
		b.Fatal(err)
	}
	head := res.Position
	reg := newRegistry()
	adm := kadm.NewClient(kafkatest.ClientOf(b, url))
	// Every run's topic is created and has its leaders before the run,
	// which would otherwise wait for the client's next metadata refresh
	// (up to 5s); the checkpoint topic too.
	if _, err := adm.CreateTopic(b.Context(), 1, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, benchCheckpoints); err != nil &&
		!errors.Is(err, kerr.TopicAlreadyExists) {
		b.Fatal(err)
	}
	topic := func() string {
		t := kafkatest.TopicOn(b, adm, 6)
		waitLeaders(b, adm, t, benchCheckpoints)
		return t
	}

	for _, batch := range []int{0, 500} {
		name := "defaults"
		if batch > 0 {
			name = fmt.Sprintf("batch=%d", batch)
		}
		b.Run(name, func(b *testing.B) {
			var (
				strataWall, rawWall, txnWall time.Duration
				turn                         int
			)
			runs := []func(){
				func() { strataWall += benchStrata(b, url, store, reg, pg, topic(), head, batch) },
				func() { rawWall += benchRaw(b, url, store, reg, topic(), head, 0) },
				func() {
					txnWall += benchRaw(b, url, store, reg, topic(), head, cmp.Or(batch, kafkasink.BatchSizeDefault))
				},
			}
			for b.Loop() {
				for i := range runs {
					runs[(turn+i)%len(runs)]()
				}
				turn++
			}
			events := float64(n * turn)
			b.ReportMetric(events/strataWall.Seconds(), "strata-events/s")
			b.ReportMetric(events/rawWall.Seconds(), "raw-events/s")
			b.ReportMetric(events/txnWall.Seconds(), "rawtxn-events/s")
			b.ReportMetric(rawWall.Seconds()/strataWall.Seconds(), "strata/raw")
			b.ReportMetric(txnWall.Seconds()/strataWall.Seconds(), "strata/rawtxn")
			b.ReportMetric(float64(cmp.Or(batch, kafkasink.BatchSizeDefault)), "events/txn")
		})
	}
}

const benchCheckpoints = "strata.checkpoints.bench"

// benchMetadataAge lets every client of the benchmark learn a topic's
// partitions at once: with franz-go's default (5s between metadata
// requests), a new client's first records to a topic waited up to 5s in
// some runs, which is most of a short run.
var benchMetadataAge = kgo.MetadataMinAge(100 * time.Millisecond)

// waitLeaders waits until every partition of topics has a leader.
func waitLeaders(b *testing.B, adm *kadm.Client, topics ...string) {
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	for {
		md, err := adm.Metadata(ctx, topics...)
		ready := err == nil
		for _, t := range topics {
			d, ok := md.Topics[t]
			ready = ready && ok && d.Err == nil && len(d.Partitions) > 0
			for _, p := range d.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0
			}
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("topics %v have no leaders after a minute: %v", topics, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// benchLog is n OrderPlaced events over benchStreams streams.
func benchLog(n int) iter.Seq2[pgstore.ImportEvent, error] {
	return func(yield func(pgstore.ImportEvent, error) bool) {
		per := (n + benchStreams - 1) / benchStreams
		for i := 0; i < n; i++ {
			s := i / per
			b, _ := json.Marshal(orderPlaced{Order: fmt.Sprintf("order-%d", s), Customer: fmt.Sprintf("customer-%d", s%97), Total: int64(i), Seq: i})
			if !yield(pgstore.ImportEvent{Stream: fmt.Sprintf("order-%d", s), Event: es.EventData{Type: "OrderPlaced", Data: b,
				Metadata: es.Metadata{es.MetaCorrelationID: "c-" + strconv.Itoa(i)}}}, nil) {
				return
			}
		}
	}
}

func benchStrata(b *testing.B, url string, store es.Store, reg *es.Registry, pg *pgsink.Sink, topic string, head es.Position, batch int) time.Duration {
	sink := kafkasink.New(pg, kafkasink.Config{Brokers: []string{url}, Topics: []kafkasink.Topic{{Name: topic}},
		CheckpointTopic: benchCheckpoints, Logger: quiet, ClientOptions: []kgo.Opt{benchMetadataAge}})
	defer sink.Close()
	proj := orderEvents{name: topic, topic: topic}
	w := kafkasink.NewWorker(store, reg, sink, proj, projections.Config{Logger: quiet, BatchSize: batch})
	ctx, cancel := context.WithCancel(b.Context())
	wctx, wcancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer wcancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- w.Run(ctx)
		wcancel() // a worker that stopped early ends the wait
	}()
	err := projections.WaitFor(wctx, pg, proj.name, head)
	wall := time.Since(start)
	cancel()
	if rerr := <-done; rerr != nil {
		b.Fatal(rerr)
	}
	if err != nil {
		b.Fatal(err)
	}
	return wall
}

func benchRaw(b *testing.B, url string, store es.Store, reg *es.Registry, topic string, head es.Position, txn int) time.Duration {
	opts := []kgo.Opt{kgo.SeedBrokers(url), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(kafkasink.LingerDefault), benchMetadataAge}
	if txn > 0 {
		opts = append(opts, kgo.TransactionalID(topic))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	var perr error
	promise := func(_ *kgo.Record, err error) {
		if err != nil && perr == nil {
			perr = err
		}
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	for recs, err := range store.Subscribe(ctx, es.SubscribeOptions{BatchSize: cmp.Or(txn, projections.BatchSizeDefault)}) {
		if err != nil {
			b.Fatal(err)
		}
		if txn > 0 {
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range recs {
			v, err := reg.Decode(r)
			if err != nil {
				b.Fatal(err)
			}
			e := v.(orderPlaced)
			val, err := json.Marshal(orderPlacedV1{OrderID: e.Order, CustomerID: e.Customer, TotalCents: e.Total})
			if err != nil {
				b.Fatal(err)
			}
			cl.Produce(ctx, &kgo.Record{Key: []byte(r.Stream), Value: val,
				Headers: kafkasink.EnvelopeOf(r, "order.placed.v1", kafkasink.SourceDefault).Headers()}, promise)
		}
		if txn > 0 {
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
		}
		if len(recs) > 0 && !recs[len(recs)-1].Position.Before(head) {
			break
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	if perr != nil {
		b.Fatal(perr)
	}
	return wall
}
