package kafkasink_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
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
