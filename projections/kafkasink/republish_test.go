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

// Republish moves the checkpoint back, in Kafka and in the keeper, only
// when no worker runs the projection; the worker then publishes the events
// after it again, with the same ce_id.
func TestRepublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var head es.Position
	for i := 1; i <= 5; i++ {
		head = e.place(t, fmt.Sprintf("order-%d", i), 1)
	}
	log := e.log(t, head)
	stop, _ := e.run(t, e.sink, projections.Config{})
	e.waitFor(t, head)
	from := log[2].Position
	if err := e.newSink(t, e.cfg).Republish(t.Context(), e.proj.name, from); !errors.Is(err, kafkasink.ErrLeaseHeld) {
		t.Fatalf("Republish while a worker runs: %v, want ErrLeaseHeld", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	other := e.newSink(t, e.cfg)
	if err := other.Republish(t.Context(), e.proj.name, from); err != nil {
		t.Fatal(err)
	}
	if cp, err := e.pg.Checkpoint(t.Context(), e.proj.name); err != nil || cp.Position != from {
		t.Fatalf("keeper's checkpoint after Republish: %s (%v), want %s", cp.Position, err, from)
	}
	e.run(t, other, projections.Config{})
	e.waitFor(t, head)
	seen := make(map[string]int)
	for _, m := range readAll(t, e.url, e.proj.topic) {
		seen[header(m, kafkasink.HeaderID)]++
	}
	for i, r := range log {
		want := 1
		if i > 2 {
			want = 2
		}
		if got := seen[r.ID.String()]; got != want {
			t.Errorf("event %d (%s): %d messages, want %d", i, r.ID, got, want)
		}
	}
}

// A checkpoint topic without the projection's checkpoint, while the keeper
// has one (the topic deleted, another cluster), stalls the projection
// instead of publishing everything again; Republish mends it.
func TestCheckpointLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adm := kafkatest.Admin(t)
	cfg := e.cfg
	cfg.CheckpointTopic = kafkatest.Name(t)
	lost := kafkatest.Name(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		adm.DeleteTopics(ctx, cfg.CheckpointTopic, lost)
	})
	head := e.place(t, "order-1", 1)
	stop, _ := e.run(t, e.newSink(t, cfg), projections.Config{})
	e.waitFor(t, head)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	cfg.CheckpointTopic = lost
	sink := e.newSink(t, cfg)
	_, done := e.run(t, sink, projections.Config{})
	err := <-done
	if !errors.Is(err, projections.ErrStalled) || !errors.As(err, new(*projections.StalledError)) {
		t.Fatalf("Run with a lost checkpoint: %v, want a StalledError", err)
	}
	cp, cerr := e.pg.Checkpoint(t.Context(), e.proj.name)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if cp.State != projections.StateStalled || cp.Failure == nil || !strings.Contains(cp.Failure.Error, "has no checkpoint for it") {
		t.Fatalf("keeper's checkpoint: %s, failure %+v; want stalled, saying the checkpoint is lost", cp.State, cp.Failure)
	}
	if err := sink.Republish(t.Context(), e.proj.name, es.Start); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.SetState(t.Context(), e.proj.name, projections.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	e.run(t, sink, projections.Config{})
	e.waitFor(t, head)
	if n := len(readAll(t, e.url, e.proj.topic)); n != 2 {
		t.Errorf("%d messages after the republish, want 2 (the first run's and the republished one)", n)
	}
}
