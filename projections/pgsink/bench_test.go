package pgsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// benchEvents is how many events BenchmarkCatchUp replays: 100,000 unless
// STRATA_BENCH_EVENTS says otherwise. The figures in docs/benchmarks.md are
// for 1,000,000.
func benchEvents(b *testing.B) int {
	n := 100_000
	if s := os.Getenv("STRATA_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("STRATA_BENCH_EVENTS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// lastQty is the benchmark's read model: the last quantity per SKU, over
// n/10 SKUs.
type lastQty struct{}

func (lastQty) Name() string      { return "last_qty" }
func (lastQty) Handles() []string { return []string{"ItemAdded"} }

func (lastQty) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	skus, qtys := foldLast(len(events), func(i int) itemAdded { return events[i].Data.(itemAdded) })
	_, err := tx.Upsert(ctx, pgsink.Upsert{
		Table: tx.Table("last_qty"), Columns: []string{"sku", "qty"}, Types: []string{"text", "bigint"}, Key: []string{"sku"},
	}, skus, qtys)
	return err
}

func (lastQty) Tables() []string { return []string{"last_qty"} }

func (lastQty) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("last_qty").Sanitize()+` (sku text PRIMARY KEY, qty bigint NOT NULL)`)
	return err
}

// foldLast keeps the last quantity of each SKU of a batch.
func foldLast(n int, at func(int) itemAdded) ([]string, []int64) {
	idx := make(map[string]int, n)
	skus, qtys := make([]string, 0, n), make([]int64, 0, n)
	for i := range n {
		e := at(i)
		if j, ok := idx[e.SKU]; ok {
			qtys[j] = e.Qty
			continue
		}
		idx[e.SKU] = len(skus)
		skus, qtys = append(skus, e.SKU), append(qtys, e.Qty)
	}
	return skus, qtys
}

func BenchmarkCatchUp(b *testing.B) {
	n := benchEvents(b)
	pool, schema := pgtest.NewSchema(b)
	ctx := b.Context()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := sink.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	keys := max(n/10, 1)
	res, err := store.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range n {
			if !yield(pgstore.ImportEvent{Stream: "s-" + strconv.Itoa(i/100), Event: es.EventData{
				Type: "ItemAdded", Data: fmt.Appendf(nil, `{"sku":"sku-%d","qty":%d}`, i%keys, i),
			}}, nil) {
				return
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	head := res.Position
	q := func(sql string) string { return replaceSchema(sql, schema) }
	reset := func(b *testing.B) {
		b.Helper()
		for _, sql := range []string{
			`DROP TABLE IF EXISTS {{schema}}.last_qty`,
			`CREATE TABLE {{schema}}.last_qty (sku text PRIMARY KEY, qty bigint NOT NULL)`,
			`DELETE FROM {{schema}}.projection_checkpoints`,
			`VACUUM ANALYZE {{schema}}.events`,
		} {
			if _, err := pool.Exec(ctx, q(sql)); err != nil {
				b.Fatal(err)
			}
		}
	}
	check := func(b *testing.B) {
		var rows int
		if err := pool.QueryRow(ctx, q(`SELECT count(*) FROM {{schema}}.last_qty`)).Scan(&rows); err != nil || rows != keys {
			b.Fatalf("read model has %d rows, %v; want %d", rows, err, keys)
		}
	}
	reg := newRegistry()

	b.Run("strata", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			reset(b)
			b.StartTimer()
			wctx, cancel := context.WithCancel(ctx)
			w := projections.NewWorker(store, reg, sink, lastQty{}, projections.Config{Logger: quiet, BatchSize: 2000})
			done := make(chan error, 1)
			go func() { done <- w.Run(wctx) }()
			if err := projections.WaitFor(ctx, sink, "last_qty", head); err != nil {
				b.Fatal(err)
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			check(b)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	// Rebuild: a new generation from the start of the log, swapped in.
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			reset(b)
			b.StartTimer()
			err := sink.Rebuild(ctx, store, reg, lastQty{}, pgsink.RebuildConfig{Worker: projections.Config{Logger: quiet, BatchSize: 2000}})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			check(b)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("raw", func(b *testing.B) {
		read := q(`SELECT tx_id, position, type, data FROM {{schema}}.events
			WHERE (tx_id, position) > ($1, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
			ORDER BY tx_id, position LIMIT $3`)
		upsert := q(`INSERT INTO {{schema}}.last_qty (sku, qty) SELECT * FROM unnest($1::text[], $2::bigint[])
			ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty`)
		advance := q(`INSERT INTO {{schema}}.projection_checkpoints (name, commit_pos, prepare_pos) VALUES ('raw', $1, $2)
			ON CONFLICT (name) DO UPDATE SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, updated_at = now()`)
		for b.Loop() {
			b.StopTimer()
			reset(b)
			b.StartTimer()
			var (
				commit  uint64
				prepare int64
			)
			for {
				rows, err := pool.Query(ctx, read, commit, prepare, 2000)
				if err != nil {
					b.Fatal(err)
				}
				var events []itemAdded
				var typ string
				var data []byte
				_, err = pgx.ForEachRow(rows, []any{&commit, &prepare, &typ, &data}, func() error {
					var e itemAdded
					if typ != "ItemAdded" {
						return nil
					}
					if err := json.Unmarshal(data, &e); err != nil {
						return err
					}
					events = append(events, e)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if len(events) == 0 {
					break
				}
				skus, qtys := foldLast(len(events), func(i int) itemAdded { return events[i] })
				err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, upsert, skus, qtys); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, advance, int64(commit), prepare)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			check(b)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
