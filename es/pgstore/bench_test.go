package pgstore_test

// Each benchmark has two sub-benchmarks doing the same work against the same
// server: "strata" through the store, "raw" with plain pgx on a table of the
// same shape (raw_events: LIKE events INCLUDING ALL, so the same columns,
// defaults and indexes). `make bench` prints their throughput ratios; see
// docs/benchmarks.md. The single-event appends also have "strata-alone",
// the store with group commit off.
//
// The test server does not flush to disk (fsync=off). With
// STRATA_BENCH_DURABLE=1 each benchmark starts a server of its own with
// production durability (fsync, synchronous_commit and full_page_writes
// on), where a commit waits for the WAL flush.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	pgstest "github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/internal/bench"
	"github.com/stratadev/strata/internal/pgtest"
)

// orderPlaced is the payload of the benchmark events: about 250 bytes of
// JSON, a typical domain event.
type orderPlaced struct {
	OrderID  string     `json:"order_id"`
	Customer string     `json:"customer"`
	Currency string     `json:"currency"`
	Lines    []lineItem `json:"lines"`
}

type lineItem struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	Cents     int64  `json:"cents"`
}

func benchData(i int) []byte {
	b, _ := json.Marshal(orderPlaced{
		OrderID:  fmt.Sprintf("order-%d", i),
		Customer: "customer-1234",
		Currency: "EUR",
		Lines: []lineItem{
			{ProductID: "product-17", Name: "Espresso machine", Quantity: 1, Cents: 34900},
			{ProductID: "product-42", Name: "Coffee beans, 1 kg", Quantity: 3, Cents: 1899},
		},
	})
	return b
}

var benchMetadata = es.Metadata{
	es.MetaCorrelationID: "0b7e4c1e-5b1a-4a57-9d9e-1f0c6f3c2b11",
	es.MetaCausationID:   "5d2f3e4a-8c7b-4b1a-9e6f-2a3b4c5d6e7f",
}

type benchEnv struct {
	store  *pgstore.Store
	alone  *pgstore.Store // group commit off
	pool   *pgxpool.Pool
	schema string
	raw    string // quoted raw_events table
	data   []byte
	meta   []byte
}

func newBenchEnv(b *testing.B) *benchEnv { return newBenchEnvT(b) }

func newBenchEnvT(b testing.TB) *benchEnv {
	b.Helper()
	var (
		pool   *pgxpool.Pool
		schema string
	)
	if os.Getenv("STRATA_BENCH_DURABLE") == "1" {
		pool, schema = durablePool(b)
	} else {
		pool, schema = pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 16})
	}
	s := pgstore.New(pool, pgstore.Config{Schema: schema})
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{store: s, alone: pgstore.New(pool, pgstore.Config{Schema: schema, GroupCommitMax: 1}), pool: pool, schema: schema, raw: pgx.Identifier{schema, "raw_events"}.Sanitize(), data: benchData(1)}
	env.meta, _ = json.Marshal(benchMetadata)
	if _, err := pool.Exec(b.Context(), fmt.Sprintf("CREATE TABLE %s (LIKE %s INCLUDING ALL)",
		env.raw, pgx.Identifier{schema, "events"}.Sanitize())); err != nil {
		b.Fatal(err)
	}
	return env
}

// durablePool starts a server with production durability for the
// benchmark, and returns a pool of 16 connections on it and a schema name.
func durablePool(b testing.TB) (*pgxpool.Pool, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgstest.Start(ctx, pgstest.ServerConfig{Settings: map[string]string{
		"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop() })
	cfg, err := pgxpool.ParseConfig(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool, "bench"
}

func (env *benchEnv) event() es.EventData {
	return es.EventData{Type: "OrderPlaced", Data: env.data, Metadata: benchMetadata}
}

// runs numbers the runs of benchmark functions, so that each run appends to
// streams of its own (the same function runs several times with -count).
var runs atomic.Int64

const rawInsertColumns = "(event_id, stream_id, stream_version, type, data, metadata)"

// A single-event append with an exact expected version, against an
// autocommit INSERT of the same row.
func BenchmarkAppendOne(b *testing.B) {
	env := newBenchEnv(b)
	ctx := b.Context()
	b.Run("strata", func(b *testing.B) {
		ss := bench.NewStreams(fmt.Sprintf("one-%d", runs.Add(1)), 1000)
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			stream, v := ss.Take(1)
			if _, err := env.store.Append(ctx, stream, es.Exact(v), env.event()); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
	})
	b.Run("strata-alone", func(b *testing.B) {
		ss := bench.NewStreams(fmt.Sprintf("one-%d", runs.Add(1)), 1000)
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			stream, v := ss.Take(1)
			if _, err := env.alone.Append(ctx, stream, es.Exact(v), env.event()); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
	})
	b.Run("raw", func(b *testing.B) {
		ss := bench.NewStreams(fmt.Sprintf("one-%d", runs.Add(1)), 1000)
		insert := "INSERT INTO " + env.raw + " " + rawInsertColumns + " VALUES ($1, $2, $3, $4, $5, $6)"
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			stream, v := ss.Take(1)
			if _, err := env.pool.Exec(ctx, insert, newID(), stream, v+1, "OrderPlaced", env.data, env.meta); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
	})
}

// The same with 8 concurrent clients, each on streams of its own.
func BenchmarkAppendOneParallel(b *testing.B) {
	env := newBenchEnv(b)
	ctx := b.Context()
	parallel := func(b *testing.B, body func(ss *bench.Streams) error) {
		b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
		r := runs.Add(1)
		var client atomic.Int64
		cpu := bench.Start(b, env.pool)
		defer cpu.Stop(b)
		b.RunParallel(func(pb *testing.PB) {
			ss := bench.NewStreams(fmt.Sprintf("par-%d-%d", r, client.Add(1)), 200)
			for pb.Next() {
				if err := body(ss); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("strata", func(b *testing.B) {
		parallel(b, func(ss *bench.Streams) error {
			stream, v := ss.Take(1)
			_, err := env.store.Append(ctx, stream, es.Exact(v), env.event())
			return err
		})
	})
	b.Run("strata-alone", func(b *testing.B) {
		parallel(b, func(ss *bench.Streams) error {
			stream, v := ss.Take(1)
			_, err := env.alone.Append(ctx, stream, es.Exact(v), env.event())
			return err
		})
	})
	// Not paired with raw: the same appends while a subscription reads
	// them, so that appends notify (see notify.go). The subscriber's own
	// work shares the two cores.
	b.Run("strata-subscribed", func(b *testing.B) {
		head, err := env.store.Head(ctx)
		if err != nil {
			b.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, err := range env.store.Subscribe(sctx, es.SubscribeOptions{After: head}) {
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
		defer func() { cancel(); <-done }()
		parallel(b, func(ss *bench.Streams) error {
			stream, v := ss.Take(1)
			_, err := env.store.Append(ctx, stream, es.Exact(v), env.event())
			return err
		})
	})
	b.Run("raw", func(b *testing.B) {
		insert := "INSERT INTO " + env.raw + " " + rawInsertColumns + " VALUES ($1, $2, $3, $4, $5, $6)"
		parallel(b, func(ss *bench.Streams) error {
			stream, v := ss.Take(1)
			_, err := env.pool.Exec(ctx, insert, newID(), stream, v+1, "OrderPlaced", env.data, env.meta)
			return err
		})
	})
}

// A 100-event append against a multi-row INSERT of the same rows.
func BenchmarkAppend100(b *testing.B) {
	const n = 100
	env := newBenchEnv(b)
	ctx := b.Context()
	b.Run("strata", func(b *testing.B) {
		ss := bench.NewStreams(fmt.Sprintf("hundred-%d", runs.Add(1)), 100)
		evs := make([]es.EventData, n)
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			for i := range evs {
				evs[i] = env.event()
			}
			stream, v := ss.Take(n)
			if _, err := env.store.Append(ctx, stream, es.Exact(v), evs...); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw", func(b *testing.B) {
		ss := bench.NewStreams(fmt.Sprintf("hundred-%d", runs.Add(1)), 100)
		var sql strings.Builder
		sql.WriteString("INSERT INTO " + env.raw + " " + rawInsertColumns + " VALUES ")
		for i := range n {
			if i > 0 {
				sql.WriteString(", ")
			}
			fmt.Fprintf(&sql, "($%d, $%d, $%d, $%d, $%d, $%d)", 6*i+1, 6*i+2, 6*i+3, 6*i+4, 6*i+5, 6*i+6)
		}
		insert := sql.String()
		args := make([]any, 0, 6*n)
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			stream, v := ss.Take(n)
			args = args[:0]
			for i := range n {
				args = append(args, newID(), stream, v+int64(i)+1, "OrderPlaced", env.data, env.meta)
			}
			if _, err := env.pool.Exec(ctx, insert, args...); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

// Import of 10,000 events into 100 new streams against a CopyFrom of the
// same rows.
func BenchmarkImport(b *testing.B) {
	const n, perStream = 10000, 100
	env := newBenchEnv(b)
	ctx := b.Context()
	b.Run("strata", func(b *testing.B) {
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			prefix := fmt.Sprintf("import-%d", runs.Add(1))
			res, err := env.store.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
				for i := range n {
					if !yield(pgstore.ImportEvent{Stream: fmt.Sprintf("%s-%d", prefix, i/perStream), Event: env.event()}, nil) {
						return
					}
				}
			})
			if err != nil || res.Events != n {
				b.Fatal(res, err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw", func(b *testing.B) {
		columns := []string{"event_id", "stream_id", "stream_version", "type", "data", "metadata"}
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			prefix := fmt.Sprintf("import-%d", runs.Add(1))
			i := 0
			row := make([]any, 6)
			copied, err := env.pool.CopyFrom(ctx, pgx.Identifier{env.schema, "raw_events"}, columns, pgx.CopyFromFunc(func() ([]any, error) {
				if i == n {
					return nil, nil
				}
				row[0], row[1], row[2], row[3], row[4], row[5] = newID(), fmt.Sprintf("%s-%d", prefix, i/perStream), int64(i%perStream+1), "OrderPlaced", env.data, env.meta
				i++
				return row, nil
			}))
			if err != nil || copied != n {
				b.Fatal(copied, err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

// Reading a log of 10,000 events in pages of 500 and decoding each event,
// against paging through the same rows by position with plain pgx.
func BenchmarkReadAll(b *testing.B) {
	const n, page = 10000, 500
	env := newBenchEnv(b)
	ctx := b.Context()
	// The log: 1,000 appends of 10 events, to 100 streams.
	ss := bench.NewStreams("read", 100)
	evs := make([]es.EventData, 10)
	for range n / len(evs) {
		for i := range evs {
			evs[i] = env.event()
		}
		stream, v := ss.Take(len(evs))
		if _, err := env.store.Append(ctx, stream, es.Exact(v), evs...); err != nil {
			b.Fatal(err)
		}
	}
	// The raw table gets the same rows, and the index a position-paged read needs.
	events := pgx.Identifier{env.schema, "events"}.Sanitize()
	for _, sql := range []string{
		"INSERT INTO " + env.raw + " (tx_id, event_id, stream_id, stream_version, type, data, metadata, recorded_at) OVERRIDING SYSTEM VALUE " +
			"SELECT tx_id, event_id, stream_id, stream_version, type, data, metadata, recorded_at FROM " + events + " ORDER BY tx_id, position",
		"CREATE INDEX ON " + env.raw + " (position)",
		"VACUUM ANALYZE " + env.raw,
		"VACUUM ANALYZE " + events,
	} {
		if _, err := env.pool.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("strata", func(b *testing.B) {
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			read := 0
			for after := es.Start; ; {
				recs, err := env.store.ReadAll(ctx, after, page)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					break
				}
				for _, r := range recs {
					var o orderPlaced
					if err := json.Unmarshal(r.Data, &o); err != nil {
						b.Fatal(err)
					}
				}
				read += len(recs)
				after = recs[len(recs)-1].Position
			}
			if read != n {
				b.Fatalf("read %d events, want %d", read, n)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw", func(b *testing.B) {
		query := "SELECT position, event_id, stream_id, stream_version, type, data, metadata, recorded_at FROM " + env.raw +
			" WHERE position > $1 ORDER BY position LIMIT $2"
		type row struct {
			position, version int64
			id                pgtype.UUID // as the store scans it: a uuid.UUID goes through its sql.Scanner
			stream, typ       string
			data, metadata    []byte
			recordedAt        time.Time
		}
		cpu := bench.Start(b, env.pool)
		for b.Loop() {
			read := 0
			for after := int64(0); ; {
				rows, err := env.pool.Query(ctx, query, after, page)
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for rows.Next() {
					var r row
					if err := rows.Scan(&r.position, &r.id, &r.stream, &r.version, &r.typ, &r.data, &r.metadata, &r.recordedAt); err != nil {
						b.Fatal(err)
					}
					var o orderPlaced
					if err := json.Unmarshal(r.data, &o); err != nil {
						b.Fatal(err)
					}
					after = r.position
					got++
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				if got == 0 {
					break
				}
				read += got
			}
			if read != n {
				b.Fatalf("read %d events, want %d", read, n)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

// newID returns a new event ID for the raw side as a [16]byte, which pgx
// encodes in binary; a uuid.UUID would go through its driver.Valuer as text.
// The store does the same.
func newID() [16]byte { return uuid.Must(uuid.NewV7()) }
