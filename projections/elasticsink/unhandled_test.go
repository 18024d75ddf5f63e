package elasticsink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
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
