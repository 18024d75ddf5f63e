package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/internal/pgtest"
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

// The environment of a consumer process of TestConsumersKilled.
const (
	envConsumerChild  = "CLI_TEST_CONSUMER_SCHEMA" // set in the child: its schema
	envConsumerTopic  = "CLI_TEST_CONSUMER_TOPIC"
	envConsumerGroup  = "CLI_TEST_CONSUMER_GROUP"
	envConsumerBroker = "CLI_TEST_CONSUMER_BROKER"
)

// runConsumerChild is the consumer process: a read model that prints
// "applied" once it applied a batch, when it is a member of its group, and
// runs until it is killed. Its session timeout is the broker's minimum,
// 6s, so that Kafka drops it soon after it is killed.
func runConsumerChild(t *testing.T) {
	pool := pgtest.NamedPool(t, "cli-consumer-child")
	var once sync.Once
	rm, err := consume.NewReadModel(consume.Config{Brokers: []string{os.Getenv(envConsumerBroker)},
		Group: os.Getenv(envConsumerGroup), Topics: []string{os.Getenv(envConsumerTopic)}, Pool: pool,
		Schema: os.Getenv(envConsumerChild), Logger: quiet, ClientOptions: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)}},
		consume.HandlerFunc(func(context.Context, pgx.Tx, []consume.Message) error {
			once.Do(func() { fmt.Println("applied") })
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// consumersJSON runs consumers -o json and returns the group's entry as a
// map, so that absent fields show.
func (e *env) consumersJSON(t *testing.T, o opts, group string) map[string]any {
	t.Helper()
	r := e.mustRun(t, o, "consumers", group, "-o", "json")
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout.String()), &got); err != nil || len(got) != 1 {
		t.Fatalf("consumers -o json: %v:\n%s", err, r.stdout)
	}
	return got[0]
}

// A consumer killed with SIGKILL still reads "running" in its table; with
// the brokers, consumers shows it as gone once Kafka dropped its member.
// Without them it shows the recorded state, as before, and with brokers
// that cannot be reached the recorded state and a warning, exiting 0.
func TestConsumersKilled(t *testing.T) {
	if os.Getenv(envConsumerChild) != "" {
		runConsumerChild(t)
		return
	}
	t.Parallel()
	url := kafkatest.URL(t)
	e := newBareEnv(t)
	topic := kafkatest.Topic(t, 1)
	group := kafkatest.Name(t)
	withKafka := opts{env: map[string]string{cli.EnvKafkaBrokers: url}}

	env := kafkasink.Envelope{ID: uuid.New(), Type: "known.v1", Source: "test"}
	if err := kafkatest.Client(t).ProduceSync(t.Context(), &kgo.Record{Topic: topic, Value: []byte(`{}`), Headers: env.Headers()}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConsumersKilled$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), envConsumerChild+"="+e.schema, envConsumerTopic+"="+topic,
		envConsumerGroup+"="+group, envConsumerBroker+"="+url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	applied := make(chan struct{})
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if s.Text() == "applied" {
				close(applied)
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	kill := func() { _ = cmd.Process.Signal(syscall.SIGKILL); <-exited }
	t.Cleanup(kill)
	select {
	case <-applied:
	case <-exited:
		t.Fatal("the consumer process exited by itself")
	case <-time.After(60 * time.Second):
		t.Fatal("the consumer process applied no batch within 60s")
	}

	// Alive: a member, running.
	if got := e.consumersJSON(t, withKafka, group); got["State"] != "running" || got["Members"] != 1.0 || got["Live"] != true {
		t.Errorf("consumers -o json of a running consumer: State %v, Members %v, Live %v; want running, 1, true",
			got["State"], got["Members"], got["Live"])
	}
	kill()
	killed := time.Now()

	// Kafka drops the member after its session timeout; there is no
	// signal for that, so look until a deadline.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := e.consumersJSON(t, withKafka, group)
		if got["Members"] == 0.0 {
			if got["State"] != "running" || got["Live"] != false {
				t.Errorf("consumers -o json of a killed consumer: State %v, Live %v; want the recorded running, false", got["State"], got["Live"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed consumer was still a member 60s after SIGKILL: %v", got)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	t.Logf("Kafka dropped the killed member %v after SIGKILL (session timeout 6s)", time.Since(killed).Round(100*time.Millisecond))

	r := e.mustRun(t, withKafka, "consumers", group)
	for _, want := range []string{group + "\tread model\tgone\t0\t", "no member in Kafka group; recorded running at "} {
		if !strings.Contains(r.stdout.String(), want) {
			t.Errorf("consumers with brokers printed\n%s\nwant %q in it", r.stdout, want)
		}
	}

	// Without brokers: the recorded state, no MEMBERS, as before.
	r = e.mustRun(t, opts{}, "consumers", group)
	if out := r.stdout.String(); !strings.HasPrefix(out, group+"\tread model\trunning\t0\t") || strings.Contains(out, "gone") {
		t.Errorf("consumers without brokers printed\n%s\nwant the recorded state running and no member count", out)
	}
	if got := e.consumersJSON(t, opts{}, group); got["State"] != "running" || got["Members"] != nil || got["Live"] != nil {
		t.Errorf("consumers -o json without brokers: State %v, Members %v, Live %v; want running and no Members nor Live",
			got["State"], got["Members"], got["Live"])
	}

	// Brokers that cannot be reached: the recorded state, MEMBERS "?", a
	// warning naming them, exit 0.
	port, err := kafkatest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closed := "127.0.0.1:" + strconv.Itoa(port)
	r = e.cli(t.Context(), opts{tty: true, env: map[string]string{cli.EnvKafkaBrokers: closed}}, "consumers")
	r.check(t, 0, "MEMBERS", "warning: cannot tell which consumers are alive", closed)
	if out := r.stdout.String(); !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(group) + `\s+read model\s+running\s+\?\s`).MatchString(out) {
		t.Errorf("consumers with unreachable brokers printed\n%s\nwant the group running with MEMBERS ?", out)
	}
}

// A consumer of a topic that does not exist is no member of its group:
// consumers shows it as gone, and asks whether its topics exist.
func TestConsumersMissingTopic(t *testing.T) {
	t.Parallel()
	url := kafkatest.URL(t)
	e := newBareEnv(t)
	group := kafkatest.Name(t)
	rm, err := consume.NewReadModel(consume.Config{Brokers: []string{url}, Group: group, Topics: []string{group + "-missing"},
		Pool: e.pool, Schema: e.schema, Logger: quiet},
		consume.HandlerFunc(func(context.Context, pgx.Tx, []consume.Message) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rm.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	// Run records "running" once it reached the brokers; it says so
	// nowhere else, so look until a deadline.
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := consume.Status(t.Context(), e.pool, e.schema, group)
		if err == nil && st.State == consume.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer recorded no running state within 60s: %+v, %v", st, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	r := e.mustRun(t, opts{env: map[string]string{cli.EnvKafkaBrokers: url}}, "consumers", group)
	want := group + "\tread model\tgone\t0\t0\t0\t0\t"
	if out := r.stdout.String(); !strings.HasPrefix(out, want) || !strings.Contains(out, "; never consumed a partition: do its topics exist?") {
		t.Errorf("consumers printed\n%s\nwant %q and a question about the topics", out, want)
	}
}
