package consume_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// benchEvents is how many messages BenchmarkConsumeReadModel consumes:
// 100,000 unless STRATA_BENCH_EVENTS says otherwise.
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

const (
	benchPartitions = 3
	benchKeys       = 1000
	benchBatch      = consume.BatchSizeDefault
)

// upsertSQL adds a batch to the counters of table t in one statement.
func upsertSQL(t string) string {
	return `INSERT INTO ` + t + ` AS c (key, total, n)
		SELECT k, sum(a), count(*) FROM unnest($1::text[], $2::bigint[]) AS u(k, a) GROUP BY k
		ON CONFLICT (key) DO UPDATE SET total = c.total + excluded.total, n = c.n + excluded.n`
}

// decodeBatch decodes the values of a batch into the upsert's arrays.
func decodeBatch(values func(yield func([]byte) bool)) ([]string, []int64, error) {
	var keys []string
	var amounts []int64
	for v := range values {
		var a added
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, nil, err
		}
		keys, amounts = append(keys, a.Key), append(amounts, int64(a.Amount))
	}
	return keys, amounts, nil
}

type consumeBench struct {
	url, topic, schema string
	pool               *pgxpool.Pool
	ends               map[int32]int64
	n                  int
	runs               int
}

// BenchmarkConsumeReadModel consumes the same N messages of a topic of 3
// partitions into a table of counters, once with strata's ReadModel and
// once with the hand-written loop it replaces, by turns, each with a group
// and a table of its own per run:
//
//   - strata: a ReadModel with the default Config (batches of up to 500
//     messages, one transaction per partition's batch), whose handler
//     decodes the values and adds them to the counters with one unnest
//     upsert; the offset guard and the status are strata's;
//   - raw: franz-go polling 500 records at a time, and per partition's
//     batch one transaction with the same decoding, the same upsert and
//     an offset upsert, no guard.
//
// Each side's clock runs from the first batch it received to the commit
// of the last: the group join before it (0.3 to 1s on a shared machine,
// the broker's doing) would otherwise weigh more than the consuming at
// small N. It reports each side's events/s over all its runs and
// strata/raw, the ratio of those throughputs.
func BenchmarkConsumeReadModel(b *testing.B) {
	x := newConsumeBench(b)
	var strata, raw time.Duration
	turn := 0
	for b.Loop() {
		if turn%2 == 0 {
			strata += x.strata(b)
			raw += x.raw(b)
		} else {
			raw += x.raw(b)
			strata += x.strata(b)
		}
		turn++
	}
	events := float64(x.n * turn)
	b.ReportMetric(events/strata.Seconds(), "strata-events/s")
	b.ReportMetric(events/raw.Seconds(), "raw-events/s")
	b.ReportMetric(raw.Seconds()/strata.Seconds(), "strata/raw")
	b.ReportMetric(0, "ns/op")
}

func newConsumeBench(b *testing.B) *consumeBench {
	url := kafkatest.URL(b)
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 8})
	x := &consumeBench{url: url, topic: kafkatest.Topic(b, benchPartitions), schema: schema, pool: pool, n: benchEvents(b)}
	prod := producer(b, url, kgo.ProducerLinger(5*time.Millisecond))
	recs := make([]*kgo.Record, 0, 10_000)
	flush := func() {
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	for i := range x.n {
		k := i % benchKeys
		v, _ := json.Marshal(added{Key: "k" + strconv.Itoa(k), Amount: i%7 + 1})
		env := kafkasink.Envelope{ID: uuid.New(), Type: typeAdded, Source: "bench"}
		recs = append(recs, &kgo.Record{Topic: x.topic, Partition: int32(k % benchPartitions), Value: v, Headers: env.Headers()})
		if len(recs) == cap(recs) {
			flush()
		}
	}
	flush()
	x.ends = ends(b, x.topic)
	return x
}

// table creates a counters table for a run.
func (x *consumeBench) table(b *testing.B, side string) string {
	x.runs++
	t := pgx.Identifier{x.schema, fmt.Sprintf("%s_%d", side, x.runs)}.Sanitize()
	if _, err := x.pool.Exec(context.Background(), `CREATE TABLE `+t+` (key text PRIMARY KEY, total bigint NOT NULL, n bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return t
}

func (x *consumeBench) group(side string) string {
	return fmt.Sprintf("bench-%s-%s-%d-%d", x.topic, side, x.runs, time.Now().UnixNano())
}

// check fails the benchmark unless table t counted every message.
func (x *consumeBench) check(b *testing.B, t string) {
	var n int64
	if err := x.pool.QueryRow(context.Background(), `SELECT coalesce(sum(n), 0) FROM `+t).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n < int64(x.n) {
		b.Fatalf("%s counted %d messages; want %d", t, n, x.n)
	}
}

func (x *consumeBench) strata(b *testing.B) time.Duration {
	t := x.table(b, "strata")
	upsert := upsertSQL(t)
	// The batch that ends a partition notifies a channel, which PostgreSQL
	// delivers when the batch commits: the clock stops at the last commit.
	channel := fmt.Sprintf("bench_%d", x.runs)
	conn, err := pgx.Connect(context.Background(), pgtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "LISTEN "+channel); err != nil {
		b.Fatal(err)
	}
	var start time.Time
	var once sync.Once
	h := consume.HandlerFunc(func(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
		once.Do(func() { start = time.Now() })
		keys, amounts, err := decodeBatch(func(yield func([]byte) bool) {
			for _, m := range msgs {
				if !yield(m.Value) {
					return
				}
			}
		})
		if err != nil {
			return consume.BadMessage(msgs[0], err)
		}
		if _, err := tx.Exec(ctx, upsert, keys, amounts); err != nil {
			return err
		}
		if last := msgs[len(msgs)-1]; last.Offset+1 == x.ends[last.Partition] {
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", channel)
		}
		return err
	})
	rm, err := consume.NewReadModel(consume.Config{Brokers: []string{x.url}, Group: x.group("strata"), Topics: []string{x.topic},
		Pool: x.pool, Schema: x.schema, Logger: quiet}, h)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- rm.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	for range x.ends {
		if _, err := conn.WaitForNotification(wctx); err != nil {
			b.Fatalf("strata did not consume the messages: %v", err)
		}
	}
	end := time.Now()
	cancel()
	if err := <-stopped; err != nil { // and start is set
		b.Fatalf("Run: %v", err)
	}
	x.check(b, t)
	return end.Sub(start)
}

func (x *consumeBench) raw(b *testing.B) time.Duration {
	t := x.table(b, "raw")
	upsert := upsertSQL(t)
	offsets := pgx.Identifier{x.schema, fmt.Sprintf("raw_offsets_%d", x.runs)}.Sanitize()
	if _, err := x.pool.Exec(context.Background(), `CREATE TABLE `+offsets+` (topic text, partition int, next_offset bigint, PRIMARY KEY (topic, partition))`); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(x.url), kgo.ConsumerGroup(x.group("raw")), kgo.ConsumeTopics(x.topic),
		kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var start time.Time
	reached := map[int32]int64{}
	for len(reached) < len(x.ends) {
		fetches := cl.PollRecords(ctx, benchBatch)
		if err := fetches.Err0(); err != nil {
			b.Fatal(err)
		}
		if start.IsZero() && fetches.NumRecords() > 0 {
			start = time.Now()
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			keys, amounts, err := decodeBatch(func(yield func([]byte) bool) {
				for _, r := range p.Records {
					if !yield(r.Value) {
						return
					}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			next := p.Records[len(p.Records)-1].Offset + 1
			err = pgx.BeginFunc(ctx, x.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, upsert, keys, amounts); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO `+offsets+` VALUES ($1, $2, $3)
					ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, p.Topic, p.Partition, next)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			if next == x.ends[p.Partition] {
				reached[p.Partition] = next
			}
		})
	}
	took := time.Since(start)
	x.check(b, t)
	return took
}
