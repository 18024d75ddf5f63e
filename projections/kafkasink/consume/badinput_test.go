package consume_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// maxBytes is the largest message the test topics take: a 10 MB value
// must get into them, and into the dead-letter topic.
const maxBytes = 16 << 20

// bigTopic creates a topic that takes messages up to maxBytes.
func bigTopic(t *testing.T) string {
	t.Helper()
	adm := kafkatest.Admin(t)
	topic := kafkatest.Name(t)
	v := strconv.Itoa(maxBytes)
	if _, err := adm.CreateTopic(t.Context(), 1, 1, map[string]*string{"max.message.bytes": &v}, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		adm.DeleteTopic(ctx, topic)
	})
	return topic
}

// A bad message, and a word of the reason the consumer must give.
type badCase struct {
	name   string
	record func(topic string) *kgo.Record
	reason string
}

func withHeaders(topic string, value []byte, env kafkasink.Envelope, edit func([]kgo.RecordHeader) []kgo.RecordHeader) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte("k0"), Value: value, Headers: edit(env.Headers())}
}

func badCases() []badCase {
	env := func() kafkasink.Envelope { return kafkasink.Envelope{ID: uuid.New(), Type: typeAdded, Source: "test"} }
	good := []byte(`{"key":"k0","amount":1}`)
	same := func(h []kgo.RecordHeader) []kgo.RecordHeader { return h }
	return []badCase{
		{"missing header", func(topic string) *kgo.Record {
			return withHeaders(topic, good, env(), func(h []kgo.RecordHeader) []kgo.RecordHeader {
				var out []kgo.RecordHeader
				for _, x := range h {
					if x.Key != kafkasink.HeaderType {
						out = append(out, x)
					}
				}
				return out
			})
		}, "ce_type: missing"},
		{"malformed id", func(topic string) *kgo.Record {
			return withHeaders(topic, good, env(), func(h []kgo.RecordHeader) []kgo.RecordHeader {
				for i := range h {
					if h[i].Key == kafkasink.HeaderID {
						h[i].Value = []byte("order-17")
					}
				}
				return h
			})
		}, `ce_id="order-17": not a UUID`},
		{"undecodable", func(topic string) *kgo.Record {
			return withHeaders(topic, []byte(`{"key":`), env(), same)
		}, "decode order.placed.v1"},
		{"unknown type", func(topic string) *kgo.Record {
			e := env()
			e.Type = "order.exploded.v1"
			return withHeaders(topic, good, e, same)
		}, `unknown type "order.exploded.v1"`},
		{"10 MB", func(topic string) *kgo.Record {
			return withHeaders(topic, bytes.Repeat([]byte("x"), 10<<20), env(), same)
		}, "value of 10485760 bytes is over the limit of 1048576"},
	}
}

// shape runs one of the two consumers on a topic, and tells what it
// applied.
type shape struct {
	name string
	// run starts a consumer of topic with cfg, returning a function that
	// waits until it applied n good messages.
	setup func(t *testing.T, pool *pgxpool.Pool, schema string) shapeEnv
}

type shapeEnv struct {
	run     func(cfg consume.Config) func(context.Context) error
	applied func(t *testing.T) int                  // good messages applied
	waitFor func(t *testing.T, topic string, n int) // until n good messages applied
}

var shapes = []shape{
	{"read model", func(t *testing.T, pool *pgxpool.Pool, schema string) shapeEnv {
		m := counterModel{schema: schema}
		m.create(t, pool)
		var b *batches
		return shapeEnv{
			run: func(cfg consume.Config) func(context.Context) error {
				b = listen(t, m)
				rm, err := consume.NewReadModel(cfg, m)
				if err != nil {
					t.Fatal(err)
				}
				return rm.Run
			},
			applied: func(t *testing.T) int { return len(m.read(t, pool).applied) },
			waitFor: func(t *testing.T, topic string, _ int) { b.waitFor(t, ends(t, topic), 60*time.Second) },
		}
	}},
	{"commands", func(t *testing.T, pool *pgxpool.Pool, schema string) shapeEnv {
		store := newStore(t, pool, schema)
		return shapeEnv{
			run: func(cfg consume.Config) func(context.Context) error {
				c, err := consume.NewCommands(cfg, newBus(store), mapAdd)
				if err != nil {
					t.Fatal(err)
				}
				return c.Run
			},
			applied: func(t *testing.T) int {
				// The stream, not the log: a read of the log waits for
				// other tests' transactions.
				recs, err := store.ReadStream(context.Background(), "counter-k0", es.ReadStreamOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return len(recs)
			},
			waitFor: func(t *testing.T, _ string, n int) { waitEvents(t, store, n, 60*time.Second) },
		}
	}},
}

func goodRecord(topic string) *kgo.Record {
	return input{id: uuid.New(), key: "k0", amount: 1}.record(topic)
}

// Under PolicyStop a bad message stops the consumer at it: Run's error
// and the status name its topic, partition and offset and the reason, the
// message before it is applied and the one after it is not.
func TestBadMessageStops(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	for _, sh := range shapes {
		for _, bc := range badCases() {
			t.Run(sh.name+"/"+bc.name, func(t *testing.T) {
				t.Parallel()
				pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 8})
				env := sh.setup(t, pool, schema)
				topic, group := bigTopic(t), kafkatest.Name(t)
				produce(t, producer(t, url, kgo.ProducerBatchMaxBytes(maxBytes)),
					goodRecord(topic), bc.record(topic), goodRecord(topic))
				cfg := consume.Config{Brokers: []string{url}, Group: group, Topics: []string{topic}, Pool: pool, Schema: schema, Logger: quiet}
				ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
				defer cancel()
				err := env.run(cfg)(ctx)

				var stalled *consume.StalledError
				if !errors.As(err, &stalled) {
					t.Fatalf("Run returned %v; want a *StalledError", err)
				}
				want := consume.Position{Topic: topic, Partition: 0, Offset: 1}
				if got := (consume.Position{Topic: stalled.Topic, Partition: stalled.Partition, Offset: stalled.Offset}); got != want {
					t.Errorf("stalled at %s; want %s", got, want)
				}
				if !strings.Contains(err.Error(), bc.reason) || !strings.Contains(err.Error(), want.String()) {
					t.Errorf("error %q; want it to name %s and say %q", err, want, bc.reason)
				}
				st, err := consume.Status(t.Context(), pool, schema, group)
				if err != nil {
					t.Fatal(err)
				}
				if st.State != consume.StateStalled || st.At == nil || *st.At != want || !strings.Contains(st.Failure, bc.reason) {
					t.Errorf("status %q at %v failure %q; want %q at %s saying %q", st.State, st.At, st.Failure, consume.StateStalled, want, bc.reason)
				}
				if got := env.applied(t); got != 1 {
					t.Errorf("%d messages applied; want 1, the one before the bad one", got)
				}
			})
		}
	}
}

// Under PolicyDeadLetter each bad message goes to the dead-letter topic,
// as it was, with headers that say why and where it came from, and the
// consumer goes on: every good message is applied.
func TestBadMessageDeadLettered(t *testing.T) {
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

			cfg := consume.Config{Brokers: []string{url}, Group: group, Topics: []string{topic}, Pool: pool, Schema: schema,
				Logger: quiet, ErrorPolicy: projections.PolicyDeadLetter, DeadLetterTopic: dlq,
				ClientOptions: []kgo.Opt{kgo.ProducerBatchMaxBytes(maxBytes)}}
			stop := running(t, env.run(cfg))
			env.waitFor(t, topic, len(cases)+1)
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := env.applied(t); got != len(cases)+1 {
				t.Errorf("%d messages applied; want %d, every good one", got, len(cases)+1)
			}

			// Dead letters by their origin offset: those the handler refused
			// may come after those the consumer refused itself.
			dead := map[string]*kgo.Record{}
			for _, d := range readAll(t, url, dlq, len(cases)) {
				dead[headerMap(d.Headers)[consume.HeaderDeadLetterOffset]] = d
			}
			for i, bc := range cases {
				d, orig := dead[strconv.Itoa(2*i+1)], recs[2*i+1]
				if d == nil {
					t.Errorf("%s: no dead letter from offset %d", bc.name, 2*i+1)
					continue
				}
				h := headerMap(d.Headers)
				wantOrigin := map[string]string{consume.HeaderDeadLetterTopic: topic, consume.HeaderDeadLetterPartition: "0",
					consume.HeaderDeadLetterOffset: strconv.Itoa(2*i + 1), consume.HeaderDeadLetterGroup: group}
				for k, v := range wantOrigin {
					if h[k] != v {
						t.Errorf("%s: dead letter header %s = %q; want %q", bc.name, k, h[k], v)
					}
				}
				if !strings.Contains(h[consume.HeaderDeadLetterReason], bc.reason) {
					t.Errorf("%s: dead letter reason %q; want it to say %q", bc.name, h[consume.HeaderDeadLetterReason], bc.reason)
				}
				if !bytes.Equal(d.Value, orig.Value) || !bytes.Equal(d.Key, orig.Key) {
					t.Errorf("%s: dead letter key %q and value of %d bytes; want the original's %q and %d bytes", bc.name, d.Key, len(d.Value), orig.Key, len(orig.Value))
				}
				for _, oh := range orig.Headers {
					if h[oh.Key] != string(oh.Value) {
						t.Errorf("%s: dead letter header %s = %q; want the original's %q", bc.name, oh.Key, h[oh.Key], oh.Value)
					}
				}
			}
			st, err := consume.Status(t.Context(), pool, schema, group)
			if err != nil {
				t.Fatal(err)
			}
			if st.DeadLettered != int64(len(cases)) || st.State != consume.StateStopped {
				t.Errorf("status %q with %d dead-lettered; want %q and %d", st.State, st.DeadLettered, consume.StateStopped, len(cases))
			}
		})
	}
}

// readAll reads n records of topic from its start.
func readAll(t *testing.T, url, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := kafkatest.ClientOf(t, url, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d records in %s; want %d", len(out), topic, n)
		}
		out = append(out, f.Records()...)
	}
	if len(out) != n {
		t.Errorf("%d records in %s; want %d", len(out), topic, n)
	}
	return out
}

func headerMap(hs []kgo.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}
