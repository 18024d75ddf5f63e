package consume_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/metrictest"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// Good and bad messages under PolicyDeadLetter, measured: every message
// consumed, the bad ones dead-lettered, no lag once done.
func TestMetrics(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
			env := sh.setup(t, pool, schema)
			topic, dlq, group := bigTopic(t), bigTopic(t), kafkatest.Name(t)
			cases := badCases()
			var recs []*kgo.Record
			for _, bc := range cases {
				recs = append(recs, goodRecord(topic), bc.record(topic))
			}
			recs = append(recs, goodRecord(topic))
			produce(t, producer(t, url, kgo.ProducerBatchMaxBytes(maxBytes)), recs...)

			r := metrictest.New(t)
			cfg := consume.Config{Brokers: []string{url}, Group: group, Topics: []string{topic}, Pool: pool, Schema: schema,
				Logger: quiet, ErrorPolicy: projections.PolicyDeadLetter, DeadLetterTopic: dlq, MeterProvider: r.Provider,
				ClientOptions: []kgo.Opt{kgo.ProducerBatchMaxBytes(maxBytes)}}
			stop := running(t, env.run(cfg))
			env.waitFor(t, topic, len(cases)+1)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			ms := r.Collect(t)
			g := consume.AttrGroup.String(group)
			for name, want := range map[string]float64{
				"strata.consumer.messages":     float64(len(recs)),
				"strata.consumer.dead_letters": float64(len(cases)),
				"strata.consumer.lag":          0,
			} {
				if got, ok := metrictest.Value(ms, name, g); !ok || got != want {
					t.Errorf("%s = %v (found: %v), want %v", name, got, ok, want)
				}
			}
		})
	}
}

// Messages written in Kafka transactions, as kafkasink publishes them:
// each transaction leaves a commit marker after its messages, which takes
// an offset but is never delivered. Once the consumer handled every
// message, its lag is 0, in Status and in the metric, rather than one
// marker per partition.
func TestLagOfTransactionalTopic(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
			env := sh.setup(t, pool, schema)
			topic, group := kafkatest.Topic(t, 1), kafkatest.Name(t)
			tx := kafkatest.Client(t, kgo.TransactionalID(kafkatest.Name(t)))
			var last int64
			for range 3 {
				if err := tx.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				res := tx.ProduceSync(t.Context(), goodRecord(topic), goodRecord(topic))
				if err := res.FirstErr(); err != nil {
					t.Fatal(err)
				}
				last = res[len(res)-1].Record.Offset
				if err := tx.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
					t.Fatal(err)
				}
			}
			r := metrictest.New(t)
			cfg := consume.Config{Brokers: []string{url}, Group: group, Topics: []string{topic}, Pool: pool, Schema: schema,
				Logger: quiet, MeterProvider: r.Provider}
			stop := running(t, env.run(cfg))
			// Status has no signal: look until the last message is handled.
			var p consume.PartitionStatus
			for deadline := time.Now().Add(60 * time.Second); ; {
				st, err := consume.Status(t.Context(), pool, schema, group)
				if err == nil && len(st.Partitions) == 1 && st.Partitions[0].NextOffset == last+1 {
					p = st.Partitions[0]
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the consumer did not reach offset %d within 60s: %+v, %v", last+1, st, err)
				}
				select {
				case <-time.After(20 * time.Millisecond):
				case <-t.Context().Done():
					t.Fatal(t.Context().Err())
				}
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if p.Lag != 0 || p.HighWatermark != last+1 {
				t.Errorf("partition after the last message: high watermark %d, lag %d; want %d, 0", p.HighWatermark, p.Lag, last+1)
			}
			if got, ok := metrictest.Value(r.Collect(t), "strata.consumer.lag", consume.AttrGroup.String(group)); !ok || got != 0 {
				t.Errorf("strata.consumer.lag = %v (found: %v), want 0", got, ok)
			}
		})
	}
}
