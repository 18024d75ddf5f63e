package pgsink_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

	var progress []pgsink.RebuildProgress
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{
		Worker:        projections.Config{Logger: quiet, BatchSize: 300},
		ProgressEvery: 20 * time.Millisecond,
		Progress:      func(p pgsink.RebuildProgress) { progress = append(progress, p) },
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
	err := e.sink.Rebuild(ctx, e.store, e.reg, crashing, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet, BatchSize: 500, ShutdownTimeout: time.Millisecond}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Rebuild = %v, want context.Canceled", err)
	}
	cp, err := e.sink.Checkpoint(t.Context(), "stock#rebuild")
	if err != nil || cp.Position.IsZero() || !cp.Position.Before(head) || cp.State != projections.StateRebuilding {
		t.Fatalf("rebuild checkpoint after the crash: %+v, %v; want rebuilding, part-way", cp, err)
	}
	var progress []pgsink.RebuildProgress
	err = e.sink.Rebuild(t.Context(), e.store, e.reg, stock{name: "stock"}, pgsink.RebuildConfig{
		Worker:   projections.Config{Logger: quiet},
		Progress: func(p pgsink.RebuildProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
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
	if running.Progress.Projection != "stock" || running.Progress.Total != int64(head.Prepare) || running.Progress.Done != 0 {
		t.Errorf("progress of the running rebuild %+v; want 0 of %d", running.Progress, head.Prepare)
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
