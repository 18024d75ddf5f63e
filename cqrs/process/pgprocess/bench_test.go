package pgprocess_test

// Benchmarks of the runtime (docs/benchmarks.md, "Process managers"), on
// the checkout process of main_test.go: OrderPlaced → CapturePayment,
// PaymentCaptured → ConfirmOrder, OrderConfirmed → done; its commands go
// through the real command handlers of newBus onto pgstore.
//
//   - BenchmarkOrderProcess: processes run to completion per second by
//     the Runner ("strata") and by hand-written pgx doing the bare minimum
//     of the same work ("raw"), with fsync off and on; `benchratio` pairs
//     them; "strata-dispatchers-4" is the Runner with Config.Dispatchers
//     4. One op is one process.
//   - BenchmarkDeadlineDelay: how late 10,000 pending deadlines, due over
//     10 s, fire (fired_at - due_at on the database's clock), with one and
//     two runners.
//   - BenchmarkIdleInstances: the runner's heap with 1,000, 10,000 and
//     100,000 running instances in the database, while it runs a sample of
//     processes to completion.
//
// Every benchmark starts PostgreSQL servers of its own (bench_server_test.go),
// so that the shared test server's neighbours do not time it.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/bench"
)

// envInt returns the positive integer in environment variable name, or def.
func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

func BenchmarkOrderProcess(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name := "fsync-off"
		if durable {
			name = "fsync-on"
		}
		b.Run(name, func(b *testing.B) {
			srv := startBenchServer(b, durable)
			b.Run("strata", func(b *testing.B) { benchStrata(b, srv, 0) })
			b.Run("strata-dispatchers-4", func(b *testing.B) { benchStrata(b, srv, 4) })
			b.Run("raw", func(b *testing.B) { benchRaw(b, srv) })
		})
	}
}

// placeOrders imports an OrderPlaced for each of n orders, which the
// process then captures the payment of and confirms.
func placeOrders(b *testing.B, e env, n int) {
	b.Helper()
	_, err := e.store.Import(b.Context(), func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range n {
			id := strconv.Itoa(i)
			data, _ := json.Marshal(OrderPlaced{OrderID: id, Amount: 10})
			ev := es.EventData{Type: "OrderPlaced", Data: data, Metadata: es.Metadata{es.MetaCorrelationID: "order-" + id}}
			if !yield(pgstore.ImportEvent{Stream: "order-" + id, Event: ev}, nil) {
				return
			}
		}
	})
	if err != nil {
		b.Fatalf("import %d orders: %v", n, err)
	}
}

// countStatus returns how many instances of the checkout process have
// status.
func countStatus(b *testing.B, e env, status string) int {
	b.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgxIdent(e.sink.Schema(), pgprocess.InstancesTable)+
		` WHERE process = 'checkout' AND status = $1`, status).Scan(&n); err != nil {
		b.Fatalf("count %s instances: %v", status, err)
	}
	return n
}

// runUntil runs runners until the n instances of the checkout process
// with IDs "0" to "<n-1>" have completed, calls then (if not nil), and
// stops them.
func runUntil(b *testing.B, e env, n int, then func(), runners ...*pgprocess.Runner) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, len(runners))
	for _, r := range runners {
		wg.Go(func() { errs <- r.Run(rctx) })
	}
	defer func() {
		stop()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Errorf("run: %v", err)
			}
		}
	}()
	if err := waitCompleted(ctx, e, n); err != nil {
		b.Fatal(err)
	}
	if then != nil {
		then()
	}
}

// waitCompleted waits until the instances "0" to "<n-1>" of the checkout
// process have completed. It polls, every 50ms, because an instance's
// completion has no signal (following the log for the events that
// complete them would add a second reader of the log to the work the
// benchmark times). To keep the polling out of the figures it looks at
// one instance, the last one placed, until that one is completed, and
// only then counts them all.
func waitCompleted(ctx context.Context, e env, n int) error {
	table := pgxIdent(e.sink.Schema(), pgprocess.InstancesTable)
	probe := `SELECT count(*) FROM ` + table + ` WHERE process = 'checkout' AND id = $1 AND status = 'completed'`
	count := `SELECT count(*) FROM ` + table + ` WHERE process = 'checkout' AND id = ANY($1) AND status = 'completed'`
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastDone := false
	for {
		var done int
		var err error
		if !lastDone {
			err = e.pool.QueryRow(ctx, probe, ids[n-1]).Scan(&done)
			lastDone = done == 1
		}
		if err == nil && lastDone {
			err = e.pool.QueryRow(ctx, count, ids).Scan(&done)
		}
		if err != nil {
			return fmt.Errorf("wait for %d completed instances: %w", n, err)
		}
		if lastDone && done >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d completed instances: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *benchServer) runner(e env, cfg pgprocess.Config) *pgprocess.Runner {
	cfg.Logger = quiet
	return pgprocess.New(e.store, e.reg, e.sink, e.bus, process.Define(checkout{}), newCommands(), cfg)
}

// benchStrata runs b.N orders through the Runner, from the first
// OrderPlaced to the last instance completed, with its default
// configuration but for Config.Dispatchers.
func benchStrata(b *testing.B, srv *benchServer, dispatchers int) {
	e := srv.env(b)
	placeOrders(b, e, b.N)
	r := srv.runner(e, pgprocess.Config{Dispatchers: dispatchers})
	m := bench.Start(b, e.pool)
	b.ResetTimer()
	runUntil(b, e, b.N, nil, r)
	b.StopTimer()
	m.Stop(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "processes/s")
	if got := countStatus(b, e, pgprocess.StatusCompleted); got != b.N {
		b.Fatalf("completed instances: %d; want %d", got, b.N)
	}
}

// rawState is the raw side's state row: what the runner stores, without
// the bookkeeping (last event, trace, error).
type rawState struct {
	state  []byte
	status string
	steps  int64
}

// benchRaw does the bare minimum of the same work with pgx: read the log
// page by page through the same gate as the store, decide, and in one
// transaction per page upsert the instances' states, insert the events the
// commands would append (at the versions it knows) and move a checkpoint;
// until a page is empty. It sends no command, loads no state and takes no
// lock beyond the rows'.
func benchRaw(b *testing.B, srv *benchServer) {
	e := srv.env(b)
	placeOrders(b, e, b.N)
	ctx := b.Context()
	schema := e.sink.Schema()
	q := func(sql string) string {
		return pgx.Identifier{schema}.Sanitize() + "." + sql
	}
	if _, err := e.pool.Exec(ctx, `CREATE TABLE `+q(`raw_process (id text PRIMARY KEY, state jsonb NOT NULL, status text NOT NULL, step bigint NOT NULL)`)); err != nil {
		b.Fatal(err)
	}
	read := `SELECT tx_id, position, type, data FROM ` + q(`events`) + `
		WHERE (tx_id, position) > ($1, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY tx_id, position LIMIT 500`
	upsert := `INSERT INTO ` + q(`raw_process`) + ` AS p (id, state, status, step)
		SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::bigint[])
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, status = excluded.status, step = p.step + excluded.step`
	insert := `INSERT INTO ` + q(`events`) + ` (event_id, stream_id, stream_version, type, data, metadata)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::json[], $6::json[])`
	advance := `INSERT INTO ` + q(`projection_checkpoints`) + ` (name, commit_pos, prepare_pos) VALUES ('raw', $1, $2)
		ON CONFLICT (name) DO UPDATE SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, updated_at = now()`

	m := bench.Start(b, e.pool)
	b.ResetTimer()
	var (
		commit  uint64
		prepare int64
	)
	for {
		rows, err := e.pool.Query(ctx, read, commit, prepare)
		if err != nil {
			b.Fatal(err)
		}
		states := map[string]*rawState{}
		var order []string
		var ids [][16]byte
		var streams, types []string
		var versions []int64
		var datas, metas [][]byte
		var typ string
		var data []byte
		emit := func(orderID, stream string, version int64, evType string, ev any) error {
			d, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			md, err := json.Marshal(es.Metadata{es.MetaCorrelationID: "order-" + orderID, es.MetaCausationID: stream})
			if err != nil {
				return err
			}
			ids = append(ids, uuid.New())
			streams, versions, types = append(streams, stream), append(versions, version), append(types, evType)
			datas, metas = append(datas, d), append(metas, md)
			return nil
		}
		n, err := pgx.ForEachRow(rows, []any{&commit, &prepare, &typ, &data}, func() error {
			var id string
			var next func() error
			switch typ {
			case "OrderPlaced":
				var ev OrderPlaced
				if err := json.Unmarshal(data, &ev); err != nil {
					return err
				}
				id = ev.OrderID
				st, _ := json.Marshal(checkoutState{OrderID: ev.OrderID, Amount: ev.Amount})
				states[id] = &rawState{state: st, status: pgprocess.StatusRunning}
				next = func() error {
					return emit(id, "payment-"+id, 1, "PaymentCaptured", PaymentCaptured{OrderID: id, Amount: ev.Amount})
				}
			case "PaymentCaptured":
				var ev PaymentCaptured
				if err := json.Unmarshal(data, &ev); err != nil {
					return err
				}
				id = ev.OrderID
				next = func() error { return emit(id, "order-"+id, 2, "OrderConfirmed", OrderConfirmed{OrderID: id}) }
			case "OrderConfirmed":
				var ev OrderConfirmed
				if err := json.Unmarshal(data, &ev); err != nil {
					return err
				}
				id = ev.OrderID
			default:
				return nil
			}
			s := states[id]
			if s == nil {
				st, _ := json.Marshal(checkoutState{OrderID: id, Amount: 10})
				s = &rawState{state: st, status: pgprocess.StatusRunning}
				states[id] = s
			}
			if s.steps == 0 {
				order = append(order, id)
			}
			s.steps++
			if typ == "OrderConfirmed" {
				s.status = pgprocess.StatusCompleted
			}
			if next != nil {
				return next()
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n.RowsAffected() == 0 {
			break
		}
		pids, pstates, pstatus, psteps := make([]string, len(order)), make([][]byte, len(order)), make([]string, len(order)), make([]int64, len(order))
		for i, id := range order {
			s := states[id]
			pids[i], pstates[i], pstatus[i], psteps[i] = id, s.state, s.status, s.steps
		}
		var batch pgx.Batch
		batch.Queue(upsert, pids, pstates, pstatus, psteps)
		if len(ids) > 0 {
			batch.Queue(insert, ids, streams, versions, types, datas, metas)
		}
		batch.Queue(advance, int64(commit), prepare)
		if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &batch).Close() }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.Stop(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "processes/s")
	var done int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM `+q(`raw_process`)+` WHERE status = 'completed' AND step = 3`).Scan(&done); err != nil || done != b.N {
		b.Fatalf("completed raw processes: %d (%v); want %d", done, err, b.N)
	}
}

// BenchmarkDeadlineDelay measures how late deadlines fire. n orders
// (STRATA_BENCH_DEADLINES, default 10,000) are placed (their OrderPlaced
// imported into the log) and their instances stored as the runner stores
// them after that event, each waiting for its payment with a deadline; the
// deadlines are due from 2 s after the runners start to 10 s later
// (STRATA_BENCH_SPREAD, in seconds), evenly spread, so all n are pending
// when the first comes due. The process's
// checkpoint is put at the head of the log, as after those events. Each
// firing cancels its order (a command, whose event completes the
// instance), so the runners fire, dispatch and follow the log at once. The
// delay is closed_at - due_at, both on the database's clock: closed_at is
// the start of the transaction that fired the deadline.
func BenchmarkDeadlineDelay(b *testing.B) {
	n := envInt(b, "STRATA_BENCH_DEADLINES", 10_000)
	const lead = 2 * time.Second
	spread := time.Duration(envInt(b, "STRATA_BENCH_SPREAD", 10)) * time.Second
	srv := startBenchServer(b, false)
	for _, runners := range []int{1, 2} {
		b.Run(fmt.Sprintf("runners-%d", runners), func(b *testing.B) {
			var delays []float64 // ms
			for range b.N {
				b.StopTimer()
				e := srv.env(b)
				res, err := e.store.Import(b.Context(), func(yield func(pgstore.ImportEvent, error) bool) {
					for i := range n {
						id := strconv.Itoa(i)
						data, _ := json.Marshal(OrderPlaced{OrderID: id, Amount: 10, Manual: true, PayWithin: lead})
						if !yield(pgstore.ImportEvent{Stream: "order-" + id, Event: es.EventData{Type: "OrderPlaced", Data: data}}, nil) {
							return
						}
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				schema := e.sink.Schema()
				for _, st := range []struct {
					sql  string
					args []any
				}{
					{`INSERT INTO ` + pgxIdent(schema, pgprocess.InstancesTable) + ` (process, id, state, status, step, last_event_type)
						SELECT 'checkout', g::text, jsonb_build_object('OrderID', g::text, 'Amount', 10), 'running', 1, 'OrderPlaced'
						FROM generate_series(0, $1 - 1) g`, []any{n}},
					{`INSERT INTO ` + pgxIdent(schema, pgprocess.DeadlinesTable) + ` (process, id, name, step, due_at)
						SELECT 'checkout', g::text, 'payment', 1, now() + ($2::bigint + g * $3::bigint / $1) * interval '1 microsecond'
						FROM generate_series(0, $1 - 1) g`, []any{n, lead.Microseconds(), spread.Microseconds()}},
					{`INSERT INTO ` + pgxIdent(schema, "projection_checkpoints") + ` (name, commit_pos, prepare_pos) VALUES ($1, $2, $3)`,
						[]any{pgprocess.ProjectionPrefix + "checkout", int64(res.Position.Commit), int64(res.Position.Prepare)}},
				} {
					if _, err := e.pool.Exec(b.Context(), st.sql, st.args...); err != nil {
						b.Fatalf("store %d waiting instances: %v", n, err)
					}
				}
				rs := make([]*pgprocess.Runner, runners)
				for i := range rs {
					rs[i] = srv.runner(e, pgprocess.Config{})
				}
				b.StartTimer()
				runUntil(b, e, n, nil, rs...)
				b.StopTimer()
				d := deadlineDelays(b, e)
				if len(d) != n {
					b.Fatalf("fired deadlines: %d; want %d", len(d), n)
				}
				delays = append(delays, d...)
			}
			slices.Sort(delays)
			b.ReportMetric(percentile(delays, 0.50), "p50-ms")
			b.ReportMetric(percentile(delays, 0.99), "p99-ms")
			b.ReportMetric(delays[len(delays)-1], "max-ms")
		})
	}
}

// deadlineDelays returns the delays of the fired deadlines in ms.
func deadlineDelays(b *testing.B, e env) []float64 {
	b.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT extract(epoch FROM closed_at - due_at)::float8 * 1000 FROM `+
		pgxIdent(e.sink.Schema(), pgprocess.DeadlinesTable)+` WHERE process = 'checkout' AND status = 'fired'`)
	if err != nil {
		b.Fatal(err)
	}
	delays, err := pgx.CollectRows(rows, pgx.RowTo[float64])
	if err != nil {
		b.Fatal(err)
	}
	return delays
}

// percentile returns the p-th quantile of sorted (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// BenchmarkIdleInstances fills the instances table with k running
// instances of the checkout process (waiting for a payment, each with a
// pending deadline an hour away: the state a busy shop is in), then runs
// a sample of 1,000 orders (STRATA_BENCH_SAMPLE) through a runner from
// OrderPlaced to completion, and reports the heap in use after a GC with
// the runner still running, and the sample's processes/s. If the runtime
// kept instances in memory, heap-MB would grow with k.
func BenchmarkIdleInstances(b *testing.B) {
	sample := envInt(b, "STRATA_BENCH_SAMPLE", 1_000)
	srv := startBenchServer(b, false)
	for _, k := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("instances-%d", k), func(b *testing.B) {
			var heap, base uint64
			for range b.N {
				b.StopTimer()
				e := srv.env(b)
				fillInstances(b, e, k)
				placeOrders(b, e, sample)
				r := srv.runner(e, pgprocess.Config{})
				base = heapInUse()
				b.StartTimer()
				runUntil(b, e, sample, func() { heap = heapInUse() }, r)
				b.StopTimer()
				if got, want := countStatus(b, e, pgprocess.StatusRunning), k; got != want {
					b.Fatalf("running instances: %d; want %d", got, want)
				}
				if got, want := countStatus(b, e, pgprocess.StatusCompleted), sample; got != want {
					b.Fatalf("completed instances: %d; want %d", got, want)
				}
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
			b.ReportMetric((float64(heap)-float64(base))/(1<<20), "heap-delta-MB")
			b.ReportMetric(float64(sample*b.N)/b.Elapsed().Seconds(), "processes/s")
		})
	}
}

// fillInstances inserts k running checkout instances, "idle-0" to
// "idle-<k-1>", each with a pending payment deadline an hour away, as the
// runner would have stored them after their OrderPlaced.
func fillInstances(b *testing.B, e env, k int) {
	b.Helper()
	ctx := context.Background()
	schema := e.sink.Schema()
	for _, sql := range []string{
		`INSERT INTO ` + pgxIdent(schema, pgprocess.InstancesTable) + ` (process, id, state, status, step, last_event_type, correlation_id)
			SELECT 'checkout', 'idle-' || i, jsonb_build_object('OrderID', 'idle-' || i, 'Amount', 10), 'running', 1, 'OrderPlaced', 'idle-' || i
			FROM generate_series(0, $1 - 1) i`,
		`INSERT INTO ` + pgxIdent(schema, pgprocess.DeadlinesTable) + ` (process, id, name, step, due_at)
			SELECT 'checkout', 'idle-' || i, 'payment', 1, now() + interval '1 hour' FROM generate_series(0, $1 - 1) i`,
		`ANALYZE ` + pgxIdent(schema, pgprocess.InstancesTable) + `, ` + pgxIdent(schema, pgprocess.DeadlinesTable),
	} {
		args := []any{k}
		if sql[:7] == "ANALYZE" {
			args = nil
		}
		if _, err := e.pool.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("fill %d instances: %v", k, err)
		}
	}
}

// heapInUse returns the bytes of the heap in use after a garbage collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
