package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

var errUnknownType = errors.New("unknown type")

// consumers shows a consumer group's state and counts from its schema,
// lists every group by default, and refuses a group that never ran.
func TestConsumers(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	e := newBareEnv(t)
	topic := kafkatest.Topic(t, 1)
	group := kafkatest.Name(t)
	ctx := t.Context()

	// Two messages: one the handler takes, one of a type it does not know
	// (dead-lettered).
	prod := kafkatest.Client(t)
	for _, typ := range []string{"known.v1", "unknown.v1"} {
		env := kafkasink.Envelope{ID: uuid.New(), Type: typ, Source: "test"}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(`{}`), Headers: env.Headers()}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dlq := kafkatest.Name(t) + "-dlq"
	if _, err := kafkatest.Admin(t).CreateTopic(ctx, 1, 1, nil, dlq); err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{}, 1)
	rm, err := consume.NewReadModel(consume.Config{Brokers: []string{url}, Group: group, Topics: []string{topic},
		Pool: e.pool, Schema: e.schema, ErrorPolicy: projections.PolicyDeadLetter, DeadLetterTopic: dlq, Logger: quiet},
		consume.HandlerFunc(func(_ context.Context, _ pgx.Tx, msgs []consume.Message) error {
			for _, m := range msgs {
				if m.Envelope.Type != "known.v1" {
					return consume.BadMessage(m, errUnknownType)
				}
			}
			select {
			case applied <- struct{}{}:
			default:
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rm.Run(rctx) }()
	// Both messages behind it: the offset moved past the second one.
	deadline := time.After(60 * time.Second)
	for moved := false; !moved; {
		select {
		case <-applied:
		case <-deadline:
			t.Fatal("the consumer did not get past both messages within 60s")
		case <-time.After(50 * time.Millisecond): // the offset is in PostgreSQL; look again
		}
		st, err := consume.Status(ctx, e.pool, e.schema, group)
		moved = err == nil && len(st.Partitions) == 1 && st.Partitions[0].NextOffset >= 2
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r := e.mustRun(t, opts{}, "consumers", "-o", "json")
	var got []consume.ConsumerStatus
	if err := json.Unmarshal([]byte(r.stdout.String()), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(got) != 1 || got[0].Group != group || got[0].Kind != consume.KindReadModel || got[0].DeadLettered != 1 || got[0].State != consume.StateStopped {
		t.Errorf("consumers -o json = %+v; want %s, a stopped read model with 1 dead-lettered", got, group)
	}
	r = e.mustRun(t, opts{tty: true}, "consumers", group)
	for _, want := range []string{"GROUP", group, "read model", "stopped"} {
		if !strings.Contains(r.stdout.String(), want) {
			t.Errorf("consumers %s printed\n%s\nwant %q in it", group, r.stdout, want)
		}
	}
	r = e.cli(ctx, opts{}, "consumers", "no-such-group")
	if r.code != 2 || !strings.Contains(r.stderr.String(), "no-such-group") {
		t.Errorf("consumers no-such-group: exit %d, %s; want 2 naming the group", r.code, r.stderr)
	}
}
