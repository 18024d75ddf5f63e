package kafkasink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// Events appended to the log reach the topic through a worker, keyed by
// their stream, with the integration event as the value and the
// CloudEvents headers; status then shows no lag.
func TestPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		for _, s := range []string{"order-a", "order-b", "order-c"} {
			e.place(t, s, i)
		}
	}
	head := e.append(t, "order-b", "OrderShipped", orderShipped{Order: "order-b"})
	e.run(t, e.sink, projections.Config{BatchSize: 4})
	e.waitFor(t, head)

	log := e.log(t, head)
	msgs := readAll(t, e.url, e.proj.topic)
	checkExactlyOnce(t, log, msgs)

	last := log[len(log)-1]
	var got *struct{ key, value, typ string }
	for _, m := range msgs {
		if header(m, kafkasink.HeaderID) == last.ID.String() {
			got = &struct{ key, value, typ string }{string(m.Key), string(m.Value), header(m, kafkasink.HeaderType)}
			want := map[string]string{
				kafkasink.HeaderSpecVersion:   "1.0",
				kafkasink.HeaderSource:        "strata",
				kafkasink.HeaderSubject:       "order-b",
				kafkasink.HeaderStreamVersion: "4",
				kafkasink.HeaderPosition:      last.Position.String(),
				kafkasink.HeaderCorrelationID: "corr-order-b",
				kafkasink.HeaderContentType:   "application/json",
			}
			for k, v := range want {
				if g := header(m, k); g != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
		}
	}
	if got == nil {
		t.Fatalf("no message with ce_id %s", last.ID)
	}
	if want := (struct{ key, value, typ string }{"order-b", `{"order_id":"order-b"}`, "order.shipped.v1"}); *got != want {
		t.Errorf("last message (key, value, ce_type) = %+v, want %+v", *got, want)
	}

	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.pg}, e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateRunning || st.Checkpoint != head || st.LagEvents != 0 {
		t.Errorf("status: state %s, checkpoint %s, lag %d events; want running, %s, 0", st.State, st.Checkpoint, st.LagEvents, head)
	}
}

// A new sink resumes from the checkpoint in Kafka, even when the keeper's
// is behind (a crash after the Kafka commit, before the keeper's copy
// moved): nothing is published twice, and the keeper's copy catches up.
func TestResumeFromKafkaCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var head es.Position
	for i := 1; i <= 5; i++ {
		head = e.place(t, fmt.Sprintf("order-%d", i), 1)
	}
	stop, _ := e.run(t, e.sink, projections.Config{BatchSize: 2})
	e.waitFor(t, head)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The keeper forgets: as if the process had died before its copy.
	if err := e.pg.Reset(t.Context(), e.proj.name, es.Start); err != nil {
		t.Fatal(err)
	}
	sink := e.newSink(t, e.cfg)
	cp, err := sink.Checkpoint(t.Context(), e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != es.Start {
		t.Fatalf("a sink that has not started the projection reads the keeper's checkpoint %s, want %s", cp.Position, es.Start)
	}
	e.run(t, sink, projections.Config{BatchSize: 2})
	e.waitFor(t, head)
	for i := 6; i <= 7; i++ {
		head = e.place(t, fmt.Sprintf("order-%d", i), 1)
	}
	e.waitFor(t, head)
	checkExactlyOnce(t, e.log(t, head), readAll(t, e.url, e.proj.topic))
}

// Apply honours the Sink contract: a batch that does not start at the
// checkpoint, or of a paused projection, is not handled; a batch without
// events moves the checkpoint without calling the handler.
func TestApplyContract(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	p1 := e.place(t, "order-1", 1)
	p2 := e.place(t, "order-2", 1)
	recs := e.log(t, p2)
	ev := func(i int) projections.Event {
		v, err := e.reg.Decode(recs[i])
		if err != nil {
			t.Fatal(err)
		}
		return projections.Event{Record: recs[i], Data: v}
	}
	handled := 0
	handle := func(ctx context.Context, tx *kafkasink.Tx) error {
		handled++
		return e.proj.HandleBatch(ctx, tx, []projections.Event{ev(0)})
	}
	name := e.proj.name

	// Not at the checkpoint.
	err := e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: p1, To: p2, Events: []projections.Event{ev(1)}}, handle)
	var moved *projections.CheckpointMovedError
	if !errors.As(err, &moved) || moved.Actual != es.Start || moved.Expected != p1 {
		t.Fatalf("Apply from %s with the checkpoint at the start: %v, want a CheckpointMovedError (expected %s, actual %s)", p1, err, p1, es.Start)
	}
	// Without events: the checkpoint moves, the handler is not called.
	if err := e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: es.Start, To: p1}, handle); err != nil {
		t.Fatal(err)
	}
	if handled != 0 {
		t.Errorf("handler called %d times for a batch without events, want 0", handled)
	}
	if cp, err := e.pg.Checkpoint(ctx, name); err != nil || cp.Position != p1 {
		t.Errorf("keeper's checkpoint after an empty batch: %s (%v), want %s", cp.Position, err, p1)
	}
	// Paused.
	if err := e.pg.SetState(ctx, name, projections.StatePaused, nil); err != nil {
		t.Fatal(err)
	}
	err = e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: p1, To: p2, Events: []projections.Event{ev(1)}}, handle)
	if !errors.Is(err, projections.ErrPaused) || handled != 0 {
		t.Fatalf("Apply while paused: %v with %d handler calls, want ErrPaused and none", err, handled)
	}
	if err := e.pg.SetState(ctx, name, projections.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	// A handler error aborts the transaction: its messages never show.
	boom := errors.New("boom")
	err = e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: p1, To: p2, Events: []projections.Event{ev(1)}},
		func(ctx context.Context, tx *kafkasink.Tx) error {
			if err := e.proj.HandleBatch(ctx, tx, []projections.Event{ev(1)}); err != nil {
				return err
			}
			return boom
		})
	if !errors.Is(err, boom) {
		t.Fatalf("Apply with a failing handler: %v, want %v", err, boom)
	}
	if err := e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: p1, To: p2, Events: []projections.Event{ev(1)}}, handle); err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, e.url, e.proj.topic)
	if len(msgs) != 1 || header(msgs[0], kafkasink.HeaderID) != recs[0].ID.String() {
		var ids []string
		for _, m := range msgs {
			ids = append(ids, header(m, kafkasink.HeaderID))
		}
		t.Errorf("read_committed messages %v, want the one the last batch published, %s", ids, recs[0].ID)
	}
	// Publishing to a topic the config does not list fails the handler.
	err = e.sink.Apply(ctx, projections.ApplyParams{Projection: name, From: p2, To: p2, Events: []projections.Event{ev(1)}},
		func(ctx context.Context, tx *kafkasink.Tx) error {
			return tx.Publish("elsewhere", ev(1), "order.placed.v1", []byte(`{}`))
		})
	if err == nil || !strings.Contains(err.Error(), `topic "elsewhere" is not in Config.Topics`) {
		t.Errorf("Publish to an unlisted topic: %v, want an error naming it", err)
	}
}

// A missing topic fails the start with an error that names it, unless
// the sink may create it.
func TestMissingTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	missing := kafkatest.Name(t)
	cfg := e.cfg
	cfg.Topics = []kafkasink.Topic{{Name: missing, Partitions: 2}}
	apply := func(s *kafkasink.Sink) error {
		return s.Apply(t.Context(), projections.ApplyParams{Projection: e.proj.name, From: es.Start, To: es.Start}, nil)
	}
	err := apply(e.newSink(t, cfg))
	var te *kafkasink.TopicError
	if !errors.As(err, &te) || te.Topic != missing || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Apply with a missing topic: %v, want a TopicError naming %s", err, missing)
	}
	if !e.sink.Transient(err) {
		t.Errorf("a missing topic is not transient; want it retried, so that creating the topic lets the worker go on")
	}

	cfg.CreateTopics = true
	if err := apply(e.newSink(t, cfg)); err != nil {
		t.Fatal(err)
	}
	adm := kafkatest.Admin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		adm.DeleteTopic(ctx, missing)
	})
	td, err := adm.ListTopics(t.Context(), missing)
	if err != nil {
		t.Fatal(err)
	}
	if d := td[missing]; d.Err != nil || len(d.Partitions) != 2 {
		t.Errorf("created topic %s: %d partitions (%v), want 2", missing, len(d.Partitions), d.Err)
	}
	cps, err := adm.DescribeTopicConfigs(t.Context(), e.cfg.CheckpointTopic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cps.On(e.cfg.CheckpointTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.MaybeValue() != "compact" {
			t.Errorf("checkpoint topic cleanup.policy = %q, want compact", c.MaybeValue())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  kafkasink.Config
		want []string // in the error, in order
	}{
		{"zero", kafkasink.Config{}, []string{"Config.Brokers is empty"}},
		{"ok", kafkasink.Config{Brokers: []string{"localhost:9092"}}, nil},
		{"many", kafkasink.Config{
			Brokers:            []string{" "},
			Topics:             []kafkasink.Topic{{Name: "a"}, {Name: "a"}, {}, {Name: "strata.checkpoints"}, {Name: "b", Partitions: -2}},
			TransactionTimeout: -1,
		}, []string{"Config.Brokers[0] is empty", `topic "a" is listed twice`, "Config.Topics[2] has no name",
			`topic "strata.checkpoints" is the checkpoint topic`, `Config.Topics[4] ("b")`, "Config.TransactionTimeout (-1ns)"}},
	} {
		err := tc.cfg.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Validate() = nil, want errors %q", tc.name, tc.want)
			continue
		}
		rest := err.Error()
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: Validate() = %q, lacks %q (or it is out of order)", tc.name, err, w)
				break
			}
			rest = rest[i+len(w):]
		}
	}
}

// Two deployments that share a cluster, and so the checkpoint topic, with
// a projection of the same name keep their checkpoints apart through
// their transactional ID prefixes: the second publishes its own events
// even though the first's checkpoint is further along the (shared
// server's) transaction ids.
func TestDeploymentsKeepApart(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := newEnvOn(t, a.url, a.proj.topic)
	b.proj = a.proj                        // the same projection name...
	b.cfg.TransactionalIDPrefix = "other-" // ...in another deployment
	b.sink = b.newSink(t, b.cfg)

	bHead := b.place(t, "b-1", 1) // b's event comes first
	aHead := a.place(t, "a-1", 1)
	stop, _ := a.run(t, a.sink, projections.Config{})
	a.waitFor(t, aHead)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stop, _ = b.run(t, b.sink, projections.Config{})
	b.waitFor(t, bHead)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]int{}
	for _, r := range readAll(t, a.url, a.proj.topic) {
		subjects[header(r, kafkasink.HeaderSubject)]++
	}
	if subjects["a-1"] != 1 || subjects["b-1"] != 1 || len(subjects) != 2 {
		t.Errorf("messages by stream = %v; want a-1 and b-1 once each", subjects)
	}
}
