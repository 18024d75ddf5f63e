package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestCatchUpAndLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.importEvents(t, 3000)
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, projections.Config{Logger: quiet})
	done := start(ctx, w)
	res := e.appendOne(t, "live", "ItemAdded", `{"sku":"sku-1","qty":-5}`)
	e.waitFor(t, "stock", res.Position)
	var qty int64
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT qty FROM {{schema}}.stock WHERE sku = 'sku-1'`, e.sink.Schema())).Scan(&qty); err != nil || qty != -5 {
		t.Errorf("stock of sku-1 = %d, %v; want -5", qty, err)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	e.checkAppliedOnce(t, nil)
	if w.Applied() != 3001 {
		t.Errorf("Applied() = %d, want 3001", w.Applied())
	}
}

func TestCancelMidTransaction(t *testing.T) {
	t.Parallel()
	for _, finish := range []bool{false, true} {
		name := "rolled back"
		if finish {
			name = "finished"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			head := e.importEvents(t, 1200)
			inside := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			p := stock{name: "stock", before: func(ctx context.Context, tx *pgsink.Tx, _ []projections.Event) error {
				first := false
				once.Do(func() { first = true })
				if !first {
					return nil
				}
				// Write something, then hold the transaction open.
				if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
					return err
				}
				close(inside)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-release:
					return nil
				}
			}}
			cfg := projections.Config{Logger: quiet, ShutdownTimeout: 50 * time.Millisecond}
			if finish {
				cfg.ShutdownTimeout = time.Minute
			}
			ctx, cancel := context.WithCancel(t.Context())
			w := projections.NewWorker(e.store, e.reg, e.sink, p, cfg)
			done := start(ctx, w)
			<-inside
			cancel()
			if finish {
				close(release)
			}
			if err := waitDone(t, done); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			cp, err := e.sink.Checkpoint(t.Context(), "stock")
			if err != nil {
				t.Fatal(err)
			}
			if finish != (w.Applied() == 500) || finish == cp.Position.IsZero() {
				t.Fatalf("finish %v: worker applied %d, checkpoint %s", finish, w.Applied(), cp.Position)
			}
			// A new worker completes the work from the checkpoint.
			ctx2, cancel2 := context.WithCancel(t.Context())
			done2 := start(ctx2, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet}))
			e.waitFor(t, "stock", head)
			cancel2()
			if err := waitDone(t, done2); err != nil {
				t.Fatal(err)
			}
			e.checkAppliedOnce(t, nil)
		})
	}
}

func TestConnectionKilledMidTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.importEvents(t, 1500)
	admin := pgtest.Admin(t)
	var kills atomic.Int32
	p := stock{name: "stock", before: func(ctx context.Context, tx *pgsink.Tx, _ []projections.Event) error {
		if kills.Load() >= 2 {
			return nil
		}
		kills.Add(1)
		var pid int
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		var ok bool
		if err := admin.QueryRow(ctx, `SELECT pg_catalog.pg_terminate_backend($1, 5000)`, pid).Scan(&ok); err != nil || !ok {
			t.Errorf("terminate backend %d: %v, %v", pid, ok, err)
		}
		return nil // the handler's writes fail on the dead connection
	}}
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	done := start(ctx, w)
	e.waitFor(t, "stock", head)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if kills.Load() != 2 {
		t.Errorf("killed %d connections, want 2", kills.Load())
	}
	e.checkAppliedOnce(t, nil)
}

// unlocked hides the sink's leases, so that two workers apply at once.
type unlocked struct {
	projections.Sink[*pgsink.Tx]
}

func TestTwoWorkersRace(t *testing.T) {
	t.Parallel()
	for _, leased := range []bool{true, false} {
		name := "with leases"
		if !leased {
			name = "without leases"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.importEvents(t, 1000)
			var sink projections.Sink[*pgsink.Tx] = e.sink
			if !leased {
				sink = unlocked{e.sink}
			}
			cfg := projections.Config{Logger: quiet, BatchSize: 50, BatchWait: -1, PollInterval: 10 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
			ctx, cancel := context.WithCancel(t.Context())
			ws := []*projections.Worker[*pgsink.Tx]{
				projections.NewWorker(e.store, e.reg, sink, stock{name: "stock"}, cfg),
				projections.NewWorker(e.store, e.reg, sink, stock{name: "stock"}, cfg),
			}
			var dones []<-chan error
			for _, w := range ws {
				dones = append(dones, start(ctx, w))
			}
			// Wait for the appends' own positions: Head may lag behind them
			// while another test's transaction holds readers back.
			var wg sync.WaitGroup
			lasts := make([]es.Position, 4)
			for i := range 4 {
				wg.Go(func() {
					for j := range 50 {
						lasts[i] = e.appendOne(t, "w"+string(rune('a'+i)), "ItemAdded", `{"sku":"x","qty":`+string(rune('0'+j%10))+`}`).Position
					}
				})
			}
			wg.Wait()
			for _, pos := range lasts {
				e.waitFor(t, "stock", pos)
			}
			cancel()
			for _, d := range dones {
				if err := waitDone(t, d); err != nil {
					t.Fatal(err)
				}
			}
			a, b := ws[0].Applied(), ws[1].Applied()
			if a+b != 1200 || leased && a != 0 && b != 0 {
				t.Errorf("workers applied %d and %d events; want 1200 in all, by one of them when leased", a, b)
			}
			e.checkAppliedOnce(t, nil)
		})
	}
}

func TestTakeover(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"cancel", "terminate"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			first := e.importEvents(t, 500)
			cfg := projections.Config{Logger: quiet, PollInterval: 20 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
			hctx, hcancel := context.WithCancel(t.Context())
			defer hcancel()
			holder := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, cfg)
			hdone := start(hctx, holder)
			e.waitFor(t, "stock", first)
			holderPID, held, err := e.sink.LeaseHolder(t.Context(), "stock")
			if err != nil || !held {
				t.Fatalf("LeaseHolder = %d, %v, %v; want the holder", holderPID, held, err)
			}
			sctx, scancel := context.WithCancel(t.Context())
			standby := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, cfg)
			sdone := start(sctx, standby)

			began := time.Now()
			switch how {
			case "cancel":
				hcancel()
				if err := waitDone(t, hdone); err != nil {
					t.Fatal(err)
				}
			case "terminate":
				if _, err := pgtest.Admin(t).Exec(t.Context(), `SELECT pg_catalog.pg_terminate_backend($1, 5000)`, holderPID); err != nil {
					t.Fatal(err)
				}
			}
			res := e.appendOne(t, "after", "ItemAdded", `{"sku":"y","qty":1}`)
			e.waitFor(t, "stock", res.Position)
			if d := time.Since(began); d > 5*time.Second {
				t.Errorf("takeover took %v", d)
			}
			pid, held, err := e.sink.LeaseHolder(t.Context(), "stock")
			if err != nil || !held || pid == holderPID {
				t.Errorf("LeaseHolder after takeover = %d, %v, %v; want a new holder", pid, held, err)
			}
			scancel()
			hcancel()
			for _, d := range []<-chan error{sdone, hdone} {
				if how == "cancel" && d == hdone {
					continue
				}
				if err := waitDone(t, d); err != nil {
					t.Fatal(err)
				}
			}
			// A holder whose lease connection was terminated lives on and
			// races the standby for the lease again; either may win.
			if how == "cancel" && standby.Applied() < 1 || holder.Applied()+standby.Applied() != 501 {
				t.Errorf("holder applied %d, standby %d; want 501 in all, the last by the standby after a cancel", holder.Applied(), standby.Applied())
			}
			e.checkAppliedOnce(t, nil)
		})
	}
}

func TestErrorPolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []projections.ErrorPolicy{projections.PolicyStop, projections.PolicyDeadLetter} {
		t.Run(map[projections.ErrorPolicy]string{0: "stop", 1: "dead letter"}[policy], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.importEvents(t, 30)
			bad := e.appendOne(t, "bad", "ItemAdded", `{"sku":"x","qty":"lots"}`)
			e.appendOne(t, "other", "SomethingElse", `{"anything":true}`)
			poison := e.appendOne(t, "poison", "ItemAdded", `{"sku":"p","qty":1}`)
			last := e.appendOne(t, "good", "ItemAdded", `{"sku":"g","qty":1}`)
			p := stock{name: "stock", fail: func(ev projections.Event) bool { return ev.Record.Stream == "poison" }}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := start(ctx, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet, ErrorPolicy: policy}))
			opts := projections.StatusOptions{Store: e.store, Checkpoints: e.sink, HeldBack: e.store.HeldBackReason}
			if policy == projections.PolicyStop {
				err := waitDone(t, done)
				var stalled *projections.StalledError
				if !errors.As(err, &stalled) {
					t.Fatalf("Run = %v; want a StalledError", err)
				}
				f := stalled.Failure
				if f.Stream != "bad" || f.Version != 1 || f.Position != bad.Position || f.Type != "ItemAdded" || !strings.Contains(f.Error, "qty") {
					t.Errorf("failure %+v; want bad@1", f)
				}
				st, err := projections.ReadStatus(t.Context(), opts, "stock")
				if err != nil {
					t.Fatal(err)
				}
				if st.State != projections.StateStalled || st.LastError == nil || st.LastError.Position != bad.Position ||
					st.Head != last.Position || !st.Checkpoint.Before(bad.Position) || st.LagEvents != 4 {
					t.Errorf("status %+v", st)
				}
				// Resume past the bad event: the poison event stalls it next.
				if err := e.sink.Reset(t.Context(), "stock", bad.Position); err != nil {
					t.Fatal(err)
				}
				if err := e.sink.SetState(t.Context(), "stock", projections.StateRunning, nil); err != nil {
					t.Fatal(err)
				}
				err = waitDone(t, start(ctx, projections.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet})))
				if !errors.As(err, &stalled) || stalled.Failure.Stream != "poison" || !strings.Contains(stalled.Failure.Error, "refusing") {
					t.Fatalf("Run after resume = %v; want stalled at poison@1", err)
				}
				return
			}
			e.waitFor(t, "stock", last.Position)
			cancel()
			if err := waitDone(t, done); err != nil {
				t.Fatal(err)
			}
			rows, err := e.pool.Query(t.Context(), replaceSchema(`SELECT event_id, stream_id, type, error FROM {{schema}}.projection_dead_letters ORDER BY commit_pos, prepare_pos`, e.sink.Schema()))
			if err != nil {
				t.Fatal(err)
			}
			skip := map[uuid.UUID]bool{}
			var streams []string
			for rows.Next() {
				var (
					id                 uuid.UUID
					stream, typ, cause string
				)
				if err := rows.Scan(&id, &stream, &typ, &cause); err != nil {
					t.Fatal(err)
				}
				skip[id] = true
				streams = append(streams, stream+":"+typ)
			}
			if rows.Err() != nil || strings.Join(streams, ",") != "bad:ItemAdded,poison:ItemAdded" {
				t.Errorf("dead letters %v, %v", streams, rows.Err())
			}
			st, err := projections.ReadStatus(t.Context(), opts, "stock")
			if err != nil || st.State != projections.StateRunning || st.LastError == nil || st.LastError.Position != poison.Position || st.LagEvents != 0 {
				t.Errorf("status %+v, %v", st, err)
			}
			e.checkAppliedOnce(t, skip)
		})
	}
}

// An open transaction that has appended holds readers back; events other
// transactions commit meanwhile are invisible but not forgotten: status
// counts them in the lag and says what holds them.
func TestStatusHeldBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	imported := e.importEvents(t, 10)
	e.waitVisible(t, imported)
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(e.store, e.reg, e.sink, stock{name: "stock"}, projections.Config{Logger: quiet})
	done := start(ctx, w)
	e.waitFor(t, "stock", imported)

	// A appends and stays open; B commits 4 events after it.
	txA, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(context.Background())
	if _, err := e.store.AppendTx(t.Context(), txA, "held-a", es.NoStream, es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":1}`)}); err != nil {
		t.Fatal(err)
	}
	var first, last es.AppendResult
	for i := range 4 {
		last = e.appendOne(t, "held-b", "ItemAdded", fmt.Sprintf(`{"sku":"b","qty":%d}`, i))
		if i == 0 {
			first = last
		}
	}
	opts := projections.StatusOptions{Store: e.store, Checkpoints: e.sink, HeldBack: e.store.HeldBackReason}
	st, err := projections.ReadStatus(t.Context(), opts, "stock")
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != imported || st.LagEvents != 4 || st.HeldBackEvents != 4 || st.LagEstimated || st.Lag <= 0 {
		t.Errorf("status %+v; want checkpoint %s, LagEvents 4, HeldBackEvents 4, exact, Lag > 0", st, imported)
	}
	if want := "held at position " + first.Position.String() + " by transaction "; !strings.HasPrefix(st.HeldBack, want) ||
		!strings.HasSuffix(st.HeldBack, ", with 4 committed events behind it") {
		t.Errorf("HeldBack %q; want it to start with %q and end with the 4 committed events behind it", st.HeldBack, want)
	}

	// A commits: the worker applies all five and the lag is gone.
	if err := txA.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "stock", last.Position)
	st, err = projections.ReadStatus(t.Context(), opts, "stock")
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEvents != 0 || st.HeldBackEvents != 0 || st.HeldBack != "" || st.Lag != 0 {
		t.Errorf("status after A committed %+v; want no lag and nothing held back", st)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if w.Applied() != 15 {
		t.Errorf("Applied() = %d, want 15", w.Applied())
	}
}

// Beyond projections.LagCountLimit, pgstore still counts the lag exactly:
// an indexed count, not a difference of positions.
func TestStatusCountsLagExactlyBeyondTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := projections.LagCountLimit + 1234
	head := e.importEvents(t, n)
	e.waitVisible(t, head)
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.sink}, "stock")
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEvents != int64(n) || st.LagEstimated || st.Head != head || st.Lag <= 0 {
		t.Errorf("status %+v; want LagEvents %d, not estimated, head %s", st, n, head)
	}
}
