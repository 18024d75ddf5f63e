package kafkasink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
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

// Settings of BenchmarkEndToEndLatency.
const (
	latencyRate       = 1000 // events appended per second, over all appenders
	latencyAppenders  = 16   // appender goroutines, each on a schedule of its own
	latencyStreams    = 64   // streams the events are spread over
	latencyPartitions = 6
)

// latencyDuration is how long BenchmarkEndToEndLatency appends: 10s unless
// STRATA_BENCH_SECONDS says otherwise.
func latencyDuration(b *testing.B) time.Duration {
	d := 10 * time.Second
	if s := os.Getenv("STRATA_BENCH_SECONDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("STRATA_BENCH_SECONDS=%q: want a positive number", s)
		}
		d = time.Duration(v) * time.Second
	}
	return d
}

// BenchmarkEndToEndLatency measures how long an event takes from the
// command side to another service: appenders append OrderPlaced events to
// a pgstore store at a steady 1,000 events/s (16 goroutines, each
// on a schedule of 62.5/s that makes up for a late append at once, over 64
// streams, one event per append), a worker made
// with kafkasink.NewWorker publishes them to a topic of 6 partitions with
// default Configs everywhere (pgstore: notifications, PollInterval 1s;
// worker: BatchSize 5000 as the sink advises, BatchWait 20ms, PollInterval
// 1s; sink: Linger 5ms, one transaction per batch with its checkpoint),
// and a plain franz-go consumer with read_committed isolation reads the
// topic. Each event's latency runs from just before its Append to the
// moment the consumer sees the message whose ce_id is the event's ID. It
// appends for 10s (STRATA_BENCH_SECONDS), waits until every event was
// seen, and reports the p50, p99 and maximum latency, the rate the
// appenders achieved, and the p50 of the first part of the way: from the
// Append to the start of the worker's HandleBatch that has the event
// (handled-p50-ms), and the p50 and p99 of the Append calls themselves.
func BenchmarkEndToEndLatency(b *testing.B) {
	url := kafkatest.URL(b)
	dur := latencyDuration(b)
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 16})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	pg := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := pg.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(kafkatest.ClientOf(b, url))
	if _, err := adm.CreateTopic(b.Context(), 1, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, benchCheckpoints); err != nil &&
		!errors.Is(err, kerr.TopicAlreadyExists) {
		b.Fatal(err)
	}
	reg := newRegistry()

	var lat, handled, appends []time.Duration
	var appended int
	var took time.Duration
	for b.Loop() {
		topic := kafkatest.TopicOn(b, adm, latencyPartitions)
		waitLeaders(b, adm, topic, benchCheckpoints)
		r := latencyRun(b, url, store, reg, pg, topic, dur)
		lat = append(lat, r.latencies...)
		handled = append(handled, r.handled...)
		appends = append(appends, r.appends...)
		appended += len(r.latencies)
		took += r.took
	}
	slices.Sort(lat)
	slices.Sort(handled)
	slices.Sort(appends)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(ms(handled[len(handled)/2]), "handled-p50-ms")
	b.ReportMetric(ms(appends[len(appends)/2]), "append-p50-ms")
	b.ReportMetric(ms(appends[len(appends)*99/100]), "append-p99-ms")
	b.ReportMetric(float64(appended)/took.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

type latencyResult struct {
	latencies []time.Duration
	handled   []time.Duration // until the worker's handler had the event
	appends   []time.Duration // of the Append calls
	took      time.Duration   // the appenders' time
}

func latencyRun(b *testing.B, url string, store *pgstore.Store, reg *es.Registry, pg *pgsink.Sink, topic string, dur time.Duration) latencyResult {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var (
		mu      sync.Mutex
		sent    = map[uuid.UUID]time.Time{}
		seen    = map[uuid.UUID]time.Duration{}
		handled = map[uuid.UUID]time.Duration{} // until the worker's handler had it
		appends []time.Duration                 // how long each Append took
		extra   int                             // messages without an integration event's headers, or seen twice
	)

	// The consumer: read_committed, from the start of the topic, no group.
	// It closes warm when it sees the warm-up event, and done when it saw
	// every event appended once appending has ended (ended is set).
	cl, err := kgo.NewClient(kgo.SeedBrokers(url), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), benchMetadataAge)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	warmID := uuid.New()
	warm, done := make(chan struct{}), make(chan struct{})
	var ended bool
	var warmOnce, doneOnce sync.Once
	finish := func() { // with mu held
		if ended && len(seen) == len(sent) {
			doneOnce.Do(func() { close(done) })
		}
	}
	consumed := make(chan error, 1)
	go func() {
		for {
			fetches := cl.PollFetches(ctx)
			now := time.Now()
			if ctx.Err() != nil {
				return
			}
			if err := fetches.Err0(); err != nil {
				consumed <- fmt.Errorf("consume %s: %w", topic, err)
				return
			}
			mu.Lock()
			fetches.EachRecord(func(r *kgo.Record) {
				env, err := kafkasink.ParseHeaders(r.Headers)
				switch {
				case err != nil:
					extra++
				case env.ID == warmID:
					warmOnce.Do(func() { close(warm) })
				default:
					t0, ok := sent[env.ID]
					if _, twice := seen[env.ID]; twice {
						extra++
					} else if ok {
						seen[env.ID] = now.Sub(t0)
					}
				}
			})
			finish()
			mu.Unlock()
		}
	}()

	// The publisher.
	sink := kafkasink.New(pg, kafkasink.Config{Brokers: []string{url}, Topics: []kafkasink.Topic{{Name: topic}},
		CheckpointTopic: benchCheckpoints, Logger: quiet, ClientOptions: []kgo.Opt{benchMetadataAge}})
	defer sink.Close()
	proj := timedEvents{orderEvents: orderEvents{name: topic, topic: topic}, at: func(events []projections.Event) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			_, again := handled[ev.Record.ID] // a batch retried
			if t0, ok := sent[ev.Record.ID]; ok && !again {
				handled[ev.Record.ID] = now.Sub(t0)
			}
		}
	}}
	w := kafkasink.NewWorker(store, reg, sink, proj, projections.Config{Logger: quiet})
	wctx, wcancel := context.WithCancel(ctx)
	worked := make(chan error, 1)
	go func() { worked <- w.Run(wctx) }()
	defer func() {
		wcancel()
		if err := <-worked; err != nil {
			b.Errorf("worker: %v", err)
		}
	}()
	// The worker and the consumer are up once the consumer saw an event
	// appended now (the worker also publishes the events of earlier runs,
	// which the consumer ignores).
	warmUp, _ := json.Marshal(orderPlaced{Order: "warm-up"})
	if _, err := store.Append(ctx, "warm-up", es.Any, es.EventData{ID: warmID, Type: "OrderPlaced", Data: warmUp}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-warm:
	case err := <-consumed:
		b.Fatal(err)
	case <-time.After(2 * time.Minute):
		b.Fatal("the consumer did not see the warm-up event within 2 minutes")
	}

	// The appenders.
	start := time.Now()
	actx, acancel := context.WithTimeout(ctx, dur)
	defer acancel()
	var wg sync.WaitGroup
	errs := make(chan error, latencyAppenders)
	for a := range latencyAppenders {
		wg.Go(func() {
			// A schedule rather than a ticker: an append that took longer
			// than the interval is made up for at once, so that the rate
			// holds while the store keeps up. (Tickers drop the ticks they
			// missed: 700 to 900 events/s here.)
			every := time.Second * latencyAppenders / latencyRate
			next := start.Add(every * time.Duration(a) / latencyAppenders)
			timer := time.NewTimer(time.Until(next))
			defer timer.Stop()
			for i := 0; ; i++ {
				select {
				case <-actx.Done():
					return
				case <-timer.C:
				}
				next = next.Add(every)
				timer.Reset(time.Until(next))
				s := a + latencyAppenders*(i%(latencyStreams/latencyAppenders))
				stream := fmt.Sprintf("order-%d", s)
				v, _ := json.Marshal(orderPlaced{Order: stream, Customer: "c", Total: int64(i), Seq: i})
				id := uuid.New()
				t0 := time.Now()
				mu.Lock()
				sent[id] = t0
				mu.Unlock()
				if _, err := store.Append(ctx, stream, es.Any, es.EventData{ID: id, Type: "OrderPlaced", Data: v}); err != nil {
					errs <- fmt.Errorf("append to %s: %w", stream, err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				appends = append(appends, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	mu.Lock()
	ended = true
	finish()
	mu.Unlock()

	select {
	case <-done:
	case err := <-consumed:
		b.Fatal(err)
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("the consumer saw %d of %d events within 2 minutes of the last append", len(seen), len(sent))
	}
	mu.Lock()
	defer mu.Unlock()
	if extra > 0 {
		b.Fatalf("the consumer saw %d messages twice or without an integration event's headers", extra)
	}
	out := latencyResult{took: took, appends: appends}
	for id, d := range seen {
		out.latencies = append(out.latencies, d)
		out.handled = append(out.handled, handled[id])
	}
	return out
}

// timedEvents tells at which events its batches hold as they start.
type timedEvents struct {
	orderEvents
	at func([]projections.Event)
}

func (p timedEvents) HandleBatch(ctx context.Context, tx *kafkasink.Tx, events []projections.Event) error {
	p.at(events)
	return p.orderEvents.HandleBatch(ctx, tx, events)
}
