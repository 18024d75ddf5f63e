package pgsink_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// readStock reads the live stock table the way a read API would.
func (e env) readStock(ctx context.Context) (rows int, sum int64, err error) {
	err = e.pool.QueryRow(ctx, replaceSchema(`SELECT count(*), coalesce(sum(qty), 0) FROM {{schema}}.stock`, e.sink.Schema())).Scan(&rows, &sum)
	return rows, sum, err
}

func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 5000)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	live := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, projections.Config{Logger: quiet})
	ldone := start(ctx, live)
	e.waitFor(t, "stock", head)
	wantRows, wantSum, err := e.readStock(t.Context())
	if err != nil || wantRows != 100 {
		t.Fatalf("live read model: %d rows, %v", wantRows, err)
	}

	// A reader queries the live table throughout the rebuild.
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		reads atomic.Int64
		bad   atomic.Value
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, sum, err := e.readStock(t.Context())
			if err != nil || n != wantRows || sum != wantSum {
				bad.Store([]any{n, sum, err})
			}
			reads.Add(1)
		}
	})

	var progress []projections.RebuildProgress
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{
		Worker:        projections.Config{Logger: quiet, BatchSize: 300},
		ProgressEvery: 20 * time.Millisecond,
		Progress:      func(p projections.RebuildProgress) { progress = append(progress, p) },
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if b := bad.Load(); b != nil {
		t.Errorf("a reader saw %v during the rebuild; want %d rows summing to %d, no error", b, wantRows, wantSum)
	}
	if reads.Load() == 0 {
		t.Error("the reader did not read")
	}
	if len(progress) == 0 || !progress[len(progress)-1].Swapped || progress[len(progress)-1].Done != progress[len(progress)-1].Total {
		t.Errorf("progress %+v; want a last report that says swapped", progress)
	}
	// The live worker goes on with the new generation.
	res := e.appendOne(t, "after", "ItemAdded", `{"sku":"new","qty":7}`)
	e.waitFor(t, "stock", res.Position)
	if n, _, err := e.readStock(t.Context()); err != nil || n != 101 {
		t.Errorf("after the swap and one more event: %d rows, %v; want 101", n, err)
	}
	e.checkAppliedOnce(t, nil) // the new generation's applied table
	var leftovers int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename LIKE '%\_\_%'`, e.sink.Schema()).Scan(&leftovers); err != nil || leftovers != 0 {
		t.Errorf("%d tables of old or new generations left, %v", leftovers, err)
	}
	cancel()
	if err := waitDone(t, ldone); err != nil {
		t.Fatal(err)
	}
}

func TestRebuildResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A rolled-back append burns 50 sequence numbers: positions' Prepare
	// parts run to 3050 for 3000 events, and progress must count events.
	burn, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	burnt := make([]es.EventData, 50)
	for i := range burnt {
		burnt[i] = es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":1}`)}
	}
	if _, err := e.store.AppendTx(t.Context(), burn, "burnt", es.NoStream, burnt...); err != nil {
		t.Fatal(err)
	}
	if err := burn.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	head := e.importEvents(t, 3000)
	e.waitVisible(t, head)
	ctx, cancel := context.WithCancel(t.Context())
	var batches atomic.Int32
	crashing := stock{name: "stock", before: func(context.Context, *pgsink.Tx, []projections.Event) error {
		if batches.Add(1) == 3 {
			cancel() // the rebuild "crashes" after two batches
		}
		return nil
	}}
	err = e.sink.Rebuild(ctx, e.store, e.reg, crashing, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet, BatchSize: 500, ShutdownTimeout: time.Millisecond}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Rebuild = %v, want context.Canceled", err)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "stock#rebuild")
	if err != nil || cp.Position.IsZero() || !cp.Position.Before(head) || cp.State != projections.StateRebuilding {
		t.Fatalf("rebuild checkpoint after the crash: %+v, %v; want rebuilding, part-way", cp, err)
	}
	var progress []projections.RebuildProgress
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{
		Worker:   projections.Config{Logger: quiet},
		Progress: func(p projections.RebuildProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	applied, err := e.store.CountEvents(t.Context(), es.Start, cp.Position)
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) == 0 || progress[0].Total != 3000 || progress[0].Done < applied || progress[0].Estimated {
		t.Errorf("first progress of the resumed rebuild %+v; want Total 3000 events, Done at least the %d applied before the crash, counted", progress, applied)
	}
	if last := progress[len(progress)-1]; !last.Swapped || last.Done != 3000 || last.Total != 3000 {
		t.Errorf("last progress %+v; want 3000 of 3000 events, swapped", last)
	}
	live, err := e.sink.Checkpoint(t.Context(), "stock")
	if err != nil || live.Position != head {
		t.Errorf("live checkpoint %+v, %v; want %s", live, err, head)
	}
	e.checkAppliedOnce(t, nil)
	if n, _, err := e.readStock(t.Context()); err != nil || n != 100 {
		t.Errorf("rebuilt read model: %d rows, %v", n, err)
	}
}

func TestRebuildRunsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 2000)
	e.waitVisible(t, head) // else the rebuild may find nothing to do
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := stock{name: "stock", before: func(context.Context, *pgsink.Tx, []projections.Event) error {
		once.Do(func() {
			close(inside)
			<-release
		})
		return nil
	}}
	first := make(chan error, 1)
	go func() {
		first <- e.sink.Rebuild(t.Context(), e.store, e.reg, slow, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet, BatchSize: 500}})
	}()
	select {
	case <-inside:
	case err := <-first:
		t.Fatalf("Rebuild returned %v before its first batch", err)
	}
	err := e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet}})
	var running *pgsink.RebuildRunningError
	if !errors.As(err, &running) || !errors.Is(err, pgsink.ErrRebuildRunning) {
		t.Fatalf("second Rebuild = %v; want a RebuildRunningError", err)
	}
	if p := running.Progress; p.Projection != "stock" || p.Total != 2000 || p.Done != 0 || p.Estimated || p.Head != head {
		t.Errorf("progress of the running rebuild %+v; want 0 of 2000 events, counted, up to %s", running.Progress, head)
	}
	// The sink alone cannot count: its status is estimated from positions
	// until the store counts.
	pr, inProgress, err := e.sink.RebuildStatus(t.Context(), "stock")
	if err != nil || !inProgress || !pr.Estimated || pr.Head != head {
		t.Errorf("RebuildStatus during the rebuild = %+v, %v, %v; want estimated, up to %s", pr, inProgress, err, head)
	}
	if err := pr.Count(t.Context(), e.store); err != nil || pr.Estimated || pr.Total != 2000 || pr.Done != 0 {
		t.Errorf("RebuildStatus counted = %+v, %v; want 0 of 2000 events", pr, err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, inProgress, err := e.sink.RebuildStatus(t.Context(), "stock"); err != nil || inProgress {
		t.Errorf("RebuildStatus after the swap: %v, %v; want none", inProgress, err)
	}
	// The lock is free again.
	if err := e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet}}); err != nil {
		t.Fatal(err)
	}
	e.checkAppliedOnce(t, nil)
}

// TestRebuildDeadLetters: what a new generation parks stays apart from the
// live projection's dead letters until the swap, which replaces these with
// those; what an abandoned generation parked is not carried over.
func TestRebuildDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rebuildName := "stock" + projections.RebuildSuffix
	_, poison := e.parkTwo(t)
	// Left over from a generation that never swapped.
	first, err := e.store.ReadAll(t.Context(), es.Start, 1)
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	stale := first[0]
	if err := e.sink.Apply(t.Context(), projections.ApplyParams{Projection: rebuildName, To: stale.Position,
		DeadLetters: []projections.DeadLetter{{Projection: rebuildName, Record: stale, Failure: projections.Failure{Error: "stale"}}}}, nil); err != nil {
		t.Fatal(err)
	}
	e.appendOne(t, "other", "ItemAdded", `{"sku":"o","qty":1}`)
	last := e.appendOne(t, "last", "ItemAdded", `{"sku":"l","qty":1}`)
	e.waitVisible(t, last.Position)

	// The fixed projection handles poison, and refuses other; the first
	// run stops once it has parked other.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fixed := stock{name: "stock", fail: func(ev projections.Event) bool { return ev.Record.Stream == "other" },
		before: func(_ context.Context, _ *pgsink.Tx, evs []projections.Event) error {
			if len(evs) == 1 && evs[0].Record.Stream == "last" {
				cancel()
			}
			return nil
		}}
	cfg := pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet, ErrorPolicy: projections.PolicyDeadLetter, BatchSize: 10}}
	if err := e.sink.Rebuild(ctx, e.store, e.reg, fixed, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Rebuild = %v, want context.Canceled", err)
	}
	streams := func(name string) string {
		t.Helper()
		ds, err := e.sink.DeadLetters(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, d := range ds {
			s = append(s, d.Projection+":"+d.Record.Stream)
		}
		return strings.Join(s, ",")
	}
	if got := streams(""); got != "stock:bad,"+rebuildName+":bad,stock:poison,"+rebuildName+":other" {
		t.Errorf("dead letters during the rebuild: %s; want the live ones and the new generation's apart", got)
	}
	infos, err := e.sink.Projections(t.Context())
	if err != nil || len(infos) != 1 || infos[0].Name != "stock" || !infos[0].Rebuilding || infos[0].DeadLetters != 2 {
		t.Errorf("Projections during the rebuild = %+v, %v", infos, err)
	}

	fixed.before = nil
	if err := e.sink.Rebuild(t.Context(), e.store, e.reg, fixed, cfg); err != nil {
		t.Fatal(err)
	}
	// bad does not decode for the new generation either; poison is applied.
	if got := streams(""); got != "stock:bad,stock:other" {
		t.Errorf("dead letters after the swap: %s; want stock:bad,stock:other", got)
	}
	infos, err = e.sink.Projections(t.Context())
	if err != nil || len(infos) != 1 || infos[0].Rebuilding || infos[0].DeadLetters != 2 || infos[0].Checkpoint.Position != last.Position {
		t.Errorf("Projections after the swap = %+v, %v", infos, err)
	}
	var qty int64
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT qty FROM {{schema}}.stock WHERE sku = 'p'`, e.sink.Schema())).Scan(&qty); err != nil || qty != 3 {
		t.Errorf("stock of %s's sku after the rebuild = %d, %v; want 3", poison.Position, qty, err)
	}
}
