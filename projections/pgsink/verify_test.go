package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// shadowTables lists the tables of the schema whose names mark them as
// shadows of a verification.
func (e env) shadowTables(t *testing.T) []string {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT tablename FROM pg_catalog.pg_tables
		WHERE schemaname = $1 AND tablename LIKE '%\_\_v%' ORDER BY 1`, e.sink.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func (e env) runTo(t *testing.T, p stock, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet}))
	e.waitFor(t, p.name, pos)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyReportsTamperedRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 300)
	e.waitVisible(t, head)
	p := stock{name: "stock"}
	e.runTo(t, p, head)
	cfg := pgsink.VerifyConfig{Worker: projections.Config{Logger: quiet, BatchSize: 70}}

	// Untouched: no drift. A shadow an interrupted verification left is
	// dropped.
	e.exec(t, `CREATE TABLE {{schema}}.stock__v123 (x int)`)
	d, err := e.sink.Verify(t.Context(), e.store, e.reg, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equal() || d.Position != head || d.Events != 300 || len(d.Tables) != 2 ||
		d.Tables[0].Table != "applied" || d.Tables[0].LiveRows != 300 || d.Tables[0].RebuiltRows != 300 ||
		d.Tables[1].Table != "stock" || d.Tables[1].LiveRows != 100 || d.Tables[1].RebuiltRows != 100 ||
		!slices.Equal(d.Tables[1].Key, []string{"sku"}) {
		t.Errorf("untouched: drift %+v; want equal at %s after 300 events, applied 300/300 rows, stock 100/100 keyed by sku", d, head)
	}
	if s := e.shadowTables(t); len(s) != 0 {
		t.Errorf("shadow tables left: %v", s)
	}

	// Tampered: a row deleted, one added, one column changed.
	e.exec(t, `DELETE FROM {{schema}}.stock WHERE sku = 'sku-1'`)
	e.exec(t, `INSERT INTO {{schema}}.stock (sku, qty, version) VALUES ('bogus', 1, 1)`)
	e.exec(t, `UPDATE {{schema}}.stock SET qty = qty + 1000 WHERE sku = 'sku-2'`)
	d, err = e.sink.Verify(t.Context(), e.store, e.reg, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Equal() || d.Differences() != 3 {
		t.Errorf("tampered: %d differences, want 3", d.Differences())
	}
	if a := d.Tables[0]; a.Missing+a.Extra+a.Different != 0 {
		t.Errorf("applied: %+v; want no difference", a)
	}
	st := d.Tables[1]
	if st.Missing != 1 || st.Extra != 1 || st.Different != 1 || st.LiveRows != 100 || st.RebuiltRows != 100 {
		t.Errorf("stock: missing %d, extra %d, different %d, rows %d/%d; want 1, 1, 1, 100/100",
			st.Missing, st.Extra, st.Different, st.LiveRows, st.RebuiltRows)
	}
	type sample struct {
		kind projections.DiffKind
		key  string
		cols string
		live bool
		reb  bool
	}
	var got []sample
	for _, s := range st.Samples {
		got = append(got, sample{s.Kind, fmt.Sprint(s.Key), fmt.Sprint(s.Columns), s.Live != nil, s.Rebuilt != nil})
	}
	want := []sample{
		{projections.DiffExtra, "[bogus]", "[]", true, false},
		{projections.DiffMissing, "[sku-1]", "[]", false, true},
		{projections.DiffDifferent, "[sku-2]", "[qty]", true, true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("samples %+v\nwant %+v", got, want)
	}
	if s := st.Samples[2]; string(s.Live) == string(s.Rebuilt) {
		t.Errorf("the different row shows the same values on both sides: %s", s.Live)
	}

	// Ignored columns are not compared; samples are capped, not counts.
	d, err = e.sink.Verify(t.Context(), e.store, e.reg, p, pgsink.VerifyConfig{Worker: cfg.Worker, Ignore: []string{"stock.qty"}, Samples: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Tables[1]; st.Missing != 1 || st.Extra != 1 || st.Different != 0 || len(st.Samples) != 1 {
		t.Errorf("ignoring stock.qty with 1 sample: missing %d, extra %d, different %d, %d samples; want 1, 1, 0, 1",
			st.Missing, st.Extra, st.Different, len(st.Samples))
	}
	if _, err := e.sink.Verify(t.Context(), e.store, e.reg, p, pgsink.VerifyConfig{Ignore: []string{"nope.qty"}}); err == nil {
		t.Error("Verify ignoring a column of a table the projection lacks: no error")
	}
	if s := e.shadowTables(t); len(s) != 0 {
		t.Errorf("shadow tables left: %v", s)
	}
	var names []string
	rows, err := e.pool.Query(t.Context(), replaceSchema(`SELECT name FROM {{schema}}.projection_checkpoints ORDER BY 1`, e.sink.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		names = append(names, n)
	}
	if rows.Err() != nil || !slices.Equal(names, []string{"stock"}) {
		t.Errorf("checkpoints %v, %v; want only stock's", names, rows.Err())
	}
}

// TestVerifyWhileAppending verifies a projection whose worker keeps
// applying new events: both sides are compared at one position.
func TestVerifyWhileAppending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 2000)
	e.waitVisible(t, head)
	p := stock{name: "stock"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	live := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, BatchSize: 7, BatchWait: -1}))
	e.waitFor(t, "stock", head)

	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		appended int
		appErr   error
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := e.store.Append(ctx, fmt.Sprintf("busy-%d", i%5), es.Any,
				es.EventData{Type: "ItemAdded", Data: fmt.Appendf(nil, `{"sku":"sku-%d","qty":%d}`, i%150, i)})
			if err != nil {
				appErr = err
				return
			}
			appended++
		}
	})
	var progress []projections.RebuildProgress
	d, err := e.sink.Verify(t.Context(), e.store, e.reg, p, pgsink.VerifyConfig{
		Worker: projections.Config{Logger: quiet, BatchSize: 100}, ProgressEvery: 5 * time.Millisecond,
		Progress: func(pr projections.RebuildProgress) { progress = append(progress, pr) },
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if appErr != nil || appended == 0 {
		t.Fatalf("appended %d events, then %v", appended, appErr)
	}
	if !d.Equal() {
		t.Errorf("verify while appending: %d differences, want none: %+v", d.Differences(), d.Tables)
	}
	if d.Position.Before(head) || d.Events < 2000 {
		t.Errorf("compared at %s after %d events; want at or after %s, 2000 events or more", d.Position, d.Events, head)
	}
	if len(progress) == 0 || progress[len(progress)-1].Projection != "stock" {
		t.Errorf("progress %+v; want reports for stock", progress)
	}
	if s := e.shadowTables(t); len(s) != 0 {
		t.Errorf("shadow tables left: %v", s)
	}
	cancel()
	if err := waitDone(t, live); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestHoldCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 10)
	e.waitVisible(t, head)
	p := stock{name: "stock"}
	e.runTo(t, p, head)

	cp, release, err := e.sink.HoldCheckpoint(t.Context(), "stock")
	if err != nil || cp.Position != head {
		t.Fatalf("hold: %+v, %v; want the checkpoint at %s", cp, err, head)
	}
	defer release()
	// The hold takes an advisory lock, not a row lock: its transaction
	// has no ID and holds back no reader of the log.
	next := e.appendOne(t, "next", "ItemAdded", `{"sku":"n","qty":1}`).Position
	e.waitVisible(t, next)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet}))
	// The worker's batch waits for the held checkpoint's advisory lock:
	// its first key derives from the sink's schema, its second is
	// hashtext of the projection's name.
	class := fnv.New32a()
	class.Write([]byte("strata/pgsink/checkpoints/" + e.sink.Schema()))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting bool
		if err := e.pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
			AND classid::int8 = $1 AND objid::int8 = pg_catalog.hashtext($2)::int8 & 4294967295)`,
			int64(class.Sum32()), "stock").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no batch waits for the held checkpoint")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	if cp, err := e.sink.Checkpoint(t.Context(), "stock"); err != nil || cp.Position != head {
		t.Errorf("checkpoint %s, %v while held; want %s", cp.Position, err, head)
	}
	release()
	e.waitFor(t, "stock", next)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}
