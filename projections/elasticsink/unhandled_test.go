package elasticsink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
)

// appendOther appends events of a type the projection does not handle
// (nor registers), as other parts of an application write them.
func (e env) appendOther(t *testing.T, stream string, n int) es.Position {
	t.Helper()
	data := make([]es.EventData, n)
	for i := range data {
		data[i] = es.EventData{Type: "InventoryReserved", Data: []byte(`{"sku":"chair","qty":1}`)}
	}
	res, err := e.store.Append(t.Context(), stream, es.Any, data...)
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// wantIndexed waits for the projection to reach pos, then checks that it
// runs there and that the index holds exactly the orders in ids.
func (e env) wantIndexed(t *testing.T, pos es.Position, ids ...string) {
	t.Helper()
	e.waitFor(t, pos)
	if st := e.status(t); st.State != projections.StateRunning || st.Checkpoint != pos {
		t.Errorf("status = %s at %s, last error %v; want running at %s", st.State, st.Checkpoint, st.LastError, pos)
	}
	docs := e.docs(t)
	if len(docs) != len(ids) {
		t.Errorf("%d documents %v, want %v", len(docs), docs, ids)
	}
	for _, id := range ids {
		if _, ok := docs[id]; !ok {
			t.Errorf("document %s missing; documents %v", id, docs)
		}
	}
}

// wantRunning checks that a worker is still running.
func wantRunning(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Errorf("Run returned %v; want it running", err)
	default:
	}
}

// A new projection whose log starts with events it does not handle moves
// its checkpoint past them; when it starts again, the first event it
// handles is indexed: there were no documents to lose.
func TestUnhandledFirstEventsThenRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.appendOther(t, "inventory-1", 3)
	done, cancel := e.start(t, projections.Config{})
	e.waitFor(t, other)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("first Run = %v, want nil or canceled", err)
	}
	done, _ = e.start(t, projections.Config{})
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	wantRunning(t, done)
}

// The same without a restart: the worker that moved past the events it
// does not handle indexes the first one it handles.
func TestUnhandledFirstEventsNoRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.appendOther(t, "inventory-1", 3)
	done, _ := e.start(t, projections.Config{})
	e.waitFor(t, other)
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	wantRunning(t, done)
}

// Events the projection does not handle, then one it handles, in the
// first batch.
func TestUnhandledThenHandledInOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.appendOther(t, "inventory-1", 3)
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	done, _ := e.start(t, projections.Config{})
	e.wantIndexed(t, placed, "o1")
	wantRunning(t, done)
}

// A projection whose first event is parked as a dead letter moves its
// checkpoint without writing a document; the events after it are indexed.
func TestDeadLetterFirstEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := e.append(t, "order-b", orderPlaced{Order: "b1", Customer: "bob", Product: "p", Total: "lots", Status: "placed"})
	done, _ := e.start(t, projections.Config{ErrorPolicy: projections.PolicyDeadLetter})
	e.waitFor(t, bad)
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	wantRunning(t, done)
}

// startPlain runs a worker made with projections.NewWorker, which does not
// know the projection's alias, in the background; the returned channel
// has Run's error.
func (e env) startPlain(t *testing.T) <-chan error {
	t.Helper()
	w := projections.NewWorker(e.store, e.reg, projections.Sink[*elasticsink.Tx](e.sink), projections.Projection[*elasticsink.Tx](e.proj),
		projections.Config{Logger: quiet, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		done <- w.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return done
}

// A worker made with projections.NewWorker moves past events the
// projection does not handle, then indexes the first one it handles.
func TestUnhandledFirstEventsPlainWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.appendOther(t, "inventory-1", 3)
	done := e.startPlain(t)
	e.waitFor(t, other)
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	wantRunning(t, done)
}

// Once documents are written after the events it does not handle, the
// index of the projection is guarded as before: deleted, it stalls the
// projection.
func TestUnhandledFirstEventsThenIndexDeletedStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.appendOther(t, "inventory-1", 3)
	done, _ := e.start(t, projections.Config{})
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	e.deleteIndices(t)
	e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"})
	e.wantStalled(t, <-done, "the alias "+e.proj.alias+" is gone")
}

// deleteRecord deletes what the sink keeps with the projection's
// checkpoint, as an operator might.
func (e env) deleteRecord(t *testing.T) {
	t.Helper()
	tag, err := e.pool.Exec(t.Context(), `DELETE FROM `+pgx.Identifier{e.pg.Schema(), "elasticsink_checkpoints"}.Sanitize()+
		` WHERE name = $1`, e.proj.Name())
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("deleted %d records of %s, want 1", tag.RowsAffected(), e.proj.Name())
	}
}

// A checkpoint past the start whose record is gone still stalls the
// projection as it starts: only a record that names no index says that
// no document was written.
func TestRecordDeletedStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done, cancel := e.start(t, projections.Config{})
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.deleteRecord(t)
	done, _ = e.start(t, projections.Config{})
	e.wantStalled(t, <-done, "no index is recorded")
}

// The same under a worker made with projections.NewWorker: the batch
// that finds no record fails with the lost index.
func TestRecordDeletedStallsPlainWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done := e.startPlain(t)
	placed := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.wantIndexed(t, placed, "o1")
	e.deleteRecord(t)
	e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"})
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("Run still running 60s after o2 was appended; documents %v", e.docs(t))
	}
	var lost *elasticsink.IndexLostError
	if !errors.As(err, &lost) || lost.Want != "" || !strings.Contains(err.Error(), "no index is recorded") {
		t.Fatalf("Run = %v, want an IndexLostError saying no index is recorded", err)
	}
	if _, ok := e.docs(t)["o2"]; ok {
		t.Errorf("o2 was indexed into an index the checkpoint has no record of")
	}
}
