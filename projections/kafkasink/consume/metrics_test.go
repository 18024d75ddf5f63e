package consume_test

import (
	"testing"

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
