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
)

// events decodes the log up to head.
func (e env) events(t *testing.T, head es.Position) []projections.Event {
	t.Helper()
	var out []projections.Event
	for _, r := range e.log(t, head) {
		v, err := e.reg.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, projections.Event{Record: r, Data: v})
	}
	return out
}

func (e env) handle(evs []projections.Event) func(context.Context, *kafkasink.Tx) error {
	return func(ctx context.Context, tx *kafkasink.Tx) error { return e.proj.HandleBatch(ctx, tx, evs) }
}

// A sink whose producer another sink started after it (a zombie: it
// applies without the lease) is fenced by the broker: its batch fails with
// ErrFenced, not transient, the projection is not marked stalled, and a
// read_committed consumer sees each event once.
func TestFencedZombie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for i := 1; i <= 3; i++ {
		e.place(t, fmt.Sprintf("order-%d", i), 1)
	}
	evs := e.events(t, e.place(t, "order-4", 1))
	pos := func(i int) es.Position { return evs[i].Record.Position }
	name := e.proj.name
	zombie, other := e.newSink(t, e.cfg), e.newSink(t, e.cfg)

	if err := zombie.Apply(ctx, projections.ApplyParams{Projection: name, From: es.Start, To: pos(1), Events: evs[:2]}, e.handle(evs[:2])); err != nil {
		t.Fatal(err)
	}
	if err := other.Apply(ctx, projections.ApplyParams{Projection: name, From: pos(1), To: pos(2), Events: evs[2:3]}, e.handle(evs[2:3])); err != nil {
		t.Fatal(err)
	}
	// The zombie still believes the checkpoint is at pos(1).
	err := zombie.Apply(ctx, projections.ApplyParams{Projection: name, From: pos(1), To: pos(3), Events: evs[2:]}, e.handle(evs[2:]))
	var fe *kafkasink.FencedError
	if !errors.As(err, &fe) || !errors.Is(err, kafkasink.ErrFenced) || fe.Projection != name || fe.TransactionalID != "strata-"+name {
		t.Fatalf("zombie's Apply: %v, want a FencedError for %s", err, name)
	}
	t.Logf("zombie: %v", err)
	if zombie.Transient(err) {
		t.Errorf("zombie's error is transient; want it not to be")
	}
	// It stays fenced, without fencing the other in turn.
	if err := zombie.Apply(ctx, projections.ApplyParams{Projection: name, From: pos(2), To: pos(3), Events: evs[3:]}, e.handle(evs[3:])); !errors.Is(err, kafkasink.ErrFenced) {
		t.Fatalf("zombie's next Apply: %v, want ErrFenced", err)
	}
	if err := other.Apply(ctx, projections.ApplyParams{Projection: name, From: pos(2), To: pos(3), Events: evs[3:]}, e.handle(evs[3:])); err != nil {
		t.Fatalf("the legitimate sink after the zombie's attempts: %v", err)
	}
	cp, err := e.pg.Checkpoint(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if cp.State != projections.StateRunning || cp.Position != pos(3) {
		t.Errorf("keeper's checkpoint: %s at %s, want running at %s", cp.State, cp.Position, pos(3))
	}
	checkExactlyOnce(t, e.log(t, pos(3)), readAll(t, e.url, e.proj.topic))
}

// A worker whose producer is fenced stops: Run returns the error, and
// the projection is not marked stalled.
func TestFencedWorkerStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.place(t, "order-1", 1)
	_, done := e.run(t, e.sink, projections.Config{})
	e.waitFor(t, head)

	// Another sink starts the projection's producer, without the lease.
	intruder := e.newSink(t, e.cfg)
	if err := intruder.Apply(t.Context(), projections.ApplyParams{Projection: e.proj.name, From: head, To: head}, nil); err != nil {
		t.Fatal(err)
	}
	e.place(t, "order-2", 1)
	select {
	case err := <-done:
		if !errors.Is(err, kafkasink.ErrFenced) {
			t.Fatalf("Run returned %v, want ErrFenced", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the fenced worker did not stop within 60s")
	}
	cp, err := e.pg.Checkpoint(t.Context(), e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if cp.State != projections.StateRunning || cp.Position != head {
		t.Errorf("keeper's checkpoint: %s at %s, want running at %s", cp.State, cp.Position, head)
	}
}

// Two workers of one projection, each with a sink of its own: the lease
// lets one publish, the other stands by, neither is fenced, and each event
// is published once.
func TestTwoWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stopA, _ := e.run(t, e.sink, projections.Config{BatchSize: 3})
	stopB, _ := e.run(t, e.newSink(t, e.cfg), projections.Config{BatchSize: 3})
	var head es.Position
	for i := 1; i <= 20; i++ {
		head = e.place(t, fmt.Sprintf("order-%d", i%4), i)
	}
	e.waitFor(t, head)
	if err := stopA(); err != nil {
		t.Errorf("worker A: %v", err)
	}
	// B takes over.
	for i := 21; i <= 30; i++ {
		head = e.place(t, fmt.Sprintf("order-%d", i%4), i)
	}
	e.waitFor(t, head)
	if err := stopB(); err != nil {
		t.Errorf("worker B: %v", err)
	}
	checkExactlyOnce(t, e.log(t, head), readAll(t, e.url, e.proj.topic))
}

// Dead letters are kept before the transaction that moves the checkpoint
// past them commits, and a batch applied again does not keep them twice.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.place(t, "order-1", 1)
	bad := e.append(t, "order-1", "OrderShipped", orderShipped{Order: "order-1", Fail: true})
	evs := e.events(t, bad)
	dl := projections.DeadLetter{Projection: e.proj.name, Record: evs[1].Record,
		Failure: projections.Failure{Stream: "order-1", Version: 2, Position: bad, Type: "OrderShipped", Error: "cannot ship"}}
	p := projections.ApplyParams{Projection: e.proj.name, From: es.Start, To: bad, Events: evs[:1], DeadLetters: []projections.DeadLetter{dl}}
	boom := errors.New("boom")
	if err := e.sink.Apply(ctx, p, func(context.Context, *kafkasink.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Apply: %v, want %v", err, boom)
	}
	if err := e.sink.Apply(ctx, p, e.handle(evs[:1])); err != nil {
		t.Fatal(err)
	}
	dls, err := e.pg.DeadLetters(ctx, e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Record.ID != evs[1].Record.ID {
		t.Errorf("%d dead letters, want 1, of event %s", len(dls), evs[1].Record.ID)
	}

	// Through a worker under PolicyDeadLetter.
	e.place(t, "order-2", 1)
	bad2 := e.append(t, "order-2", "OrderShipped", orderShipped{Order: "order-2", Fail: true})
	head := e.place(t, "order-3", 1)
	e.run(t, e.sink, projections.Config{ErrorPolicy: projections.PolicyDeadLetter})
	e.waitFor(t, head)
	if dls, err = e.pg.DeadLetters(ctx, e.proj.name); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[1].Record.Position != bad2 {
		t.Errorf("%d dead letters, want 2, the last at %s", len(dls), bad2)
	}
	var published []es.Record
	for _, r := range e.log(t, head) {
		if r.Position != bad && r.Position != bad2 {
			published = append(published, r)
		}
	}
	checkExactlyOnce(t, published, readAll(t, e.url, e.proj.topic))
}

// A message Kafka refuses for what it is (too large) fails the handler at
// the event that published it, under the projection's error policy; the
// batch's other messages are published once.
func TestRefusedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.place(t, "order-1", 1)
	big := e.append(t, "order-1", "OrderShipped", orderShipped{Order: "order-1", Pad: 2 << 20})
	head := e.place(t, "order-2", 1)
	e.run(t, e.sink, projections.Config{ErrorPolicy: projections.PolicyDeadLetter})
	e.waitFor(t, head)
	dls, err := e.pg.DeadLetters(t.Context(), e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Record.Position != big || !strings.Contains(dls[0].Failure.Error, "MESSAGE_TOO_LARGE") {
		t.Fatalf("dead letters %+v; want one, the event at %s, refused as too large", dls, big)
	}
	var published []es.Record
	for _, r := range e.log(t, head) {
		if r.Position != big {
			published = append(published, r)
		}
	}
	checkExactlyOnce(t, published, readAll(t, e.url, e.proj.topic))
}
