package pgsink_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// parkTwo runs a live worker that parks a bad event (it does not decode)
// and a poison one (its handler refuses it), and returns them.
func (e env) parkTwo(t *testing.T) (bad, poison es.AppendResult) {
	t.Helper()
	e.importEvents(t, 20)
	bad = e.appendOne(t, "bad", "ItemAdded", `{"sku":"x","qty":"lots"}`)
	poison = e.appendOne(t, "poison", "ItemAdded", `{"sku":"p","qty":3}`)
	last := e.appendOne(t, "good", "ItemAdded", `{"sku":"g","qty":1}`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	refuse := stock{name: "stock", fail: func(ev projections.Event) bool { return ev.Record.Stream == "poison" }}
	done := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, refuse, projections.Config{Logger: quiet, ErrorPolicy: projections.PolicyDeadLetter}))
	e.waitFor(t, "stock", last.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	return bad, poison
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad, poison := e.parkTwo(t)
	ds, err := e.sink.DeadLetters(t.Context(), "stock")
	if err != nil || len(ds) != 2 {
		t.Fatalf("DeadLetters = %+v, %v; want 2", ds, err)
	}
	b, p := ds[0], ds[1]
	if b.Projection != "stock" || b.Record.Stream != "bad" || b.Record.Position != bad.Position || b.Record.Type != "ItemAdded" ||
		!strings.Contains(string(b.Record.Data), `"lots"`) || b.Failure.Position != bad.Position || b.Failure.At.IsZero() ||
		!strings.Contains(b.Failure.Error, "qty") {
		t.Errorf("first dead letter %+v; want bad@1", b)
	}
	if p.Record.Stream != "poison" || !strings.Contains(p.Failure.Error, "refusing poison@1") {
		t.Errorf("second dead letter %+v; want poison@1", p)
	}
	if ds, err := e.sink.DeadLetters(t.Context(), "", p.Record.ID, uuid.New()); err != nil || len(ds) != 1 || ds[0].Record.ID != p.Record.ID {
		t.Errorf("DeadLetters of all projections by ID = %+v, %v; want poison@1 alone", ds, err)
	}
	if ds, err := e.sink.DeadLetters(t.Context(), "other"); err != nil || ds == nil || len(ds) != 0 {
		t.Errorf("DeadLetters of another projection = %#v, %v; want none", ds, err)
	}
	infos, err := e.sink.Projections(t.Context())
	if err != nil || len(infos) != 1 || infos[0].Name != "stock" || infos[0].DeadLetters != 2 || infos[0].Rebuilding ||
		infos[0].Checkpoint.Failure == nil || infos[0].Checkpoint.Position.Before(poison.Position) {
		t.Errorf("Projections = %+v, %v; want stock with 2 dead letters", infos, err)
	}

	// A retry the handler still refuses changes nothing.
	refuse := stock{name: "stock", fail: func(ev projections.Event) bool { return ev.Record.Stream == "poison" }}
	if err := e.sink.RetryDeadLetter(t.Context(), e.reg, refuse, p); err == nil || !strings.Contains(err.Error(), "refusing poison@1") {
		t.Errorf("RetryDeadLetter with the refusing handler = %v", err)
	}
	if err := e.sink.RetryDeadLetter(t.Context(), e.reg, stock{name: "stock"}, b); err == nil || !strings.Contains(err.Error(), "qty") {
		t.Errorf("RetryDeadLetter of an event that does not decode = %v", err)
	}
	if ds, _ := e.sink.DeadLetters(t.Context(), "stock"); len(ds) != 2 {
		t.Errorf("after failed retries, %d dead letters; want 2", len(ds))
	}
	// Two retries of the same event at once: one applies it, the other
	// finds it gone.
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	for i := range errs {
		wg.Go(func() { errs[i] = e.sink.RetryDeadLetter(t.Context(), e.reg, stock{name: "stock"}, p) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs[0], errs[1]), pgsink.ErrNoDeadLetter) {
		t.Errorf("concurrent retries = %v, %v; want one success and one ErrNoDeadLetter", errs[0], errs[1])
	}
	e.checkAppliedOnce(t, map[uuid.UUID]bool{b.Record.ID: true})
	var qty int64
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT qty FROM {{schema}}.stock WHERE sku = 'p'`, e.sink.Schema())).Scan(&qty); err != nil || qty != 3 {
		t.Errorf("stock of p after the retry = %d, %v; want 3", qty, err)
	}

	if n, err := e.sink.DeleteDeadLetters(t.Context(), "stock", nil); err != nil || n != 0 {
		t.Errorf("DeleteDeadLetters without IDs = %d, %v; want 0", n, err)
	}
	if n, err := e.sink.DeleteDeadLetters(t.Context(), "stock", []uuid.UUID{b.Record.ID, p.Record.ID}); err != nil || n != 1 {
		t.Errorf("DeleteDeadLetters = %d, %v; want 1", n, err)
	}
	if ds, err := e.sink.DeadLetters(t.Context(), ""); err != nil || len(ds) != 0 {
		t.Errorf("dead letters left: %+v, %v", ds, err)
	}

	if err := e.sink.DeleteCheckpoint(t.Context(), "stock"); err != nil {
		t.Fatal(err)
	}
	if infos, err := e.sink.Projections(t.Context()); err != nil || len(infos) != 0 {
		t.Errorf("Projections after DeleteCheckpoint = %+v, %v; want none", infos, err)
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "stock"); err != nil || !cp.Position.IsZero() {
		t.Errorf("checkpoint after DeleteCheckpoint = %+v, %v; want none", cp, err)
	}
}

func TestDeleteRebuildCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.parkTwo(t)
	// A generation built under a checkpoint of its own parks one event.
	rebuildName := "stock" + projections.RebuildSuffix
	rec, err := e.store.ReadAll(t.Context(), es.Start, 1)
	if err != nil || len(rec) != 1 {
		t.Fatal(rec, err)
	}
	f := projections.Failure{Stream: rec[0].Stream, Error: "new generation"}
	if err := e.sink.Apply(t.Context(), projections.ApplyParams{Projection: rebuildName, To: rec[0].Position,
		DeadLetters: []projections.DeadLetter{{Projection: rebuildName, Record: rec[0], Failure: f}}}, nil); err != nil {
		t.Fatal(err)
	}
	infos, err := e.sink.Projections(t.Context())
	if err != nil || len(infos) != 1 || !infos[0].Rebuilding || infos[0].DeadLetters != 2 {
		t.Errorf("Projections = %+v, %v; want stock, rebuilding, with its own 2 dead letters", infos, err)
	}
	// A second call, as after a swap cut short, changes nothing.
	for range 2 {
		if err := e.sink.DeleteRebuildCheckpoint(t.Context(), "stock"); err != nil {
			t.Fatal(err)
		}
		ds, err := e.sink.DeadLetters(t.Context(), "")
		if err != nil || len(ds) != 1 || ds[0].Projection != "stock" || ds[0].Record.ID != rec[0].ID || ds[0].Failure.Error != "new generation" {
			t.Errorf("dead letters after DeleteRebuildCheckpoint: %+v, %v; want the new generation's alone", ds, err)
		}
		infos, err = e.sink.Projections(t.Context())
		if err != nil || len(infos) != 1 || infos[0].Rebuilding || infos[0].DeadLetters != 1 {
			t.Errorf("Projections after DeleteRebuildCheckpoint = %+v, %v", infos, err)
		}
	}
}
