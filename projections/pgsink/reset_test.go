package pgsink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// TestResetProjectionToStartEmptiesTables resets a counting projection to
// the start while its worker runs: every event is still applied once.
func TestResetProjectionToStartEmptiesTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 300)
	e.waitVisible(t, head)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p := stock{name: "stock"}
	w := projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, BatchSize: 50})
	done := start(ctx, w)
	e.waitFor(t, "stock", head)
	e.exec(t, `INSERT INTO {{schema}}.projection_dead_letters
		(projection, event_id, stream_id, stream_version, commit_pos, prepare_pos, type, data, metadata, recorded_at, error)
		VALUES ('stock', gen_random_uuid(), 's', 1, 1, 1, 'ItemAdded', '{}', '{}', now(), 'old')`)

	res, err := e.sink.ResetProjection(t.Context(), "stock", es.Start, pgsink.ResetConfig{Tables: p.Tables()})
	if err != nil {
		t.Fatal(err)
	}
	want := []pgsink.ClearedTable{{Table: "applied", Rows: 300}, {Table: "stock", Rows: 100}}
	if res.From != head || res.To != es.Start || len(res.Cleared) != 2 || res.Cleared[0] != want[0] || res.Cleared[1] != want[1] || res.DeadLetters != 1 {
		t.Errorf("result %+v; want From %s, To 0:0, Cleared %v, DeadLetters 1", res, head, want)
	}
	// A new event wakes an idle worker.
	last := e.appendOne(t, "after", "ItemAdded", `{"sku":"new","qty":1}`).Position
	e.waitFor(t, "stock", last)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	e.checkAppliedOnce(t, nil)
	var dead int
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT count(*) FROM {{schema}}.projection_dead_letters`, e.sink.Schema())).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Errorf("%d dead letters after the reset; want 0", dead)
	}
}

func TestResetProjectionRefusesReplays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.importEvents(t, 20)
	mid := e.appendOne(t, "mid", "ItemAdded", `{"sku":"m","qty":1}`).Position
	head := e.importEvents(t, 21)
	e.waitVisible(t, head)
	p := stock{name: "stock"}
	w := projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	done := start(ctx, w)
	e.waitFor(t, "stock", head)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		pos  es.Position
		cfg  pgsink.ResetConfig
	}{
		{"back to the middle", mid, pgsink.ResetConfig{}},
		{"back to the middle, tables known", mid, pgsink.ResetConfig{Tables: p.Tables()}},
		{"to the start, tables unknown", es.Start, pgsink.ResetConfig{}},
	} {
		_, err := e.sink.ResetProjection(t.Context(), "stock", tc.pos, tc.cfg)
		var unsafe *pgsink.UnsafeResetError
		if !errors.As(err, &unsafe) || !errors.Is(err, pgsink.ErrUnsafeReset) || unsafe.From != head || unsafe.To != tc.pos {
			t.Errorf("%s: error %v; want an *UnsafeResetError from %s to %s", tc.name, err, head, tc.pos)
		}
		if cp, err := e.sink.Checkpoint(t.Context(), "stock"); err != nil || cp.Position != head {
			t.Errorf("%s: checkpoint %s, %v after the refusal; want %s", tc.name, cp.Position, err, head)
		}
		if rows, _, err := e.readStock(t.Context()); err != nil || rows != 22 {
			t.Errorf("%s: stock has %d rows, %v after the refusal; want 22", tc.name, rows, err)
		}
	}

	// Asserting idempotency allows the replay.
	res, err := e.sink.ResetProjection(t.Context(), "stock", mid, pgsink.ResetConfig{Idempotent: true, Tables: p.Tables()})
	if err != nil || res.From != head || res.To != mid || len(res.Cleared) != 0 {
		t.Errorf("idempotent reset: %+v, %v; want From %s, To %s, nothing cleared", res, err, head, mid)
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "stock"); err != nil || cp.Position != mid {
		t.Errorf("checkpoint %s, %v; want %s", cp.Position, err, mid)
	}
	// Forwards replays nothing, so it needs no assertion.
	if _, err := e.sink.ResetProjection(t.Context(), "stock", head, pgsink.ResetConfig{}); err != nil {
		t.Errorf("reset forwards: %v", err)
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "stock"); err != nil || cp.Position != head {
		t.Errorf("checkpoint %s, %v; want %s", cp.Position, err, head)
	}
}
