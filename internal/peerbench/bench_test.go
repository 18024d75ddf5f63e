package peerbench_test

// Every benchmark runs on two servers, "durable" (production settings) and
// "fast" (durability off), and on each with three sub-benchmarks doing the
// same work: strata, raw and peer (see sides_test.go). Names are
// BenchmarkX/server/side, so that benchratio pairs X/server/strata with
// X/server/raw and X/server/peer. Every sub-benchmark reports CPU time per
// operation in the benchmark process and in the server (internal/benchcpu).

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/stratadev/strata/internal/bench"
)

// EnvImportEvents sets how many events BenchmarkImport writes per
// operation. Defaults to importEventsDefault.
const EnvImportEvents = "BENCH_IMPORT_EVENTS"

const importEventsDefault = 100_000

// readAllEvents is the size of the log BenchmarkReadAll reads.
const readAllEvents = 10_000

// perStream is how many events the import and the read benchmarks put in
// each stream.
const perStream = 100

// eachSide runs body as sub-benchmarks server/side for every server and
// side. prepare, when not nil, runs once per server before the sides run,
// with every side.
func eachSide(b *testing.B, prepare func(b *testing.B, srv *server, sides map[string]side), body func(b *testing.B, srv *server, s side)) {
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			sides := newSides(b, srv)
			if prepare != nil {
				prepare(b, srv, sides)
			}
			for _, name := range sideNames {
				b.Run(name, func(b *testing.B) { body(b, srv, sides[name]) })
			}
		})
	}
}

// A single-event append to an existing stream at a known version: strata's
// Append with Exact, an autocommit INSERT, the peer's Save of an aggregate
// with one new event.
func BenchmarkAppendOne(b *testing.B) {
	eachSide(b, nil, func(b *testing.B, srv *server, s side) {
		ctx := b.Context()
		ss := bench.NewStreams(fmt.Sprintf("one-%d", runs.Add(1)), 1000)
		cpu := bench.Start(b, srv.pool(b))
		for b.Loop() {
			stream, v := ss.Take(1)
			if _, err := s.append(ctx, stream, v, 1); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
	})
}

// The same from 8 concurrent clients, each on 200 streams of its own.
func BenchmarkAppendOneParallel(b *testing.B) {
	eachSide(b, nil, func(b *testing.B, srv *server, s side) {
		ctx := b.Context()
		r := runs.Add(1)
		cpu := bench.Start(b, srv.pool(b))
		err := parallel(liveClients, b.N, func(client int) func() error {
			ss := bench.NewStreams(fmt.Sprintf("par-%d-%d", r, client), 200)
			return func() error {
				stream, v := ss.Take(1)
				_, err := s.append(ctx, stream, v, 1)
				return err
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		cpu.Stop(b)
	})
}

// 100 events to one stream in one append: strata's Append, one multi-row
// INSERT, the peer's Save of an aggregate with 100 new events.
func BenchmarkAppend100(b *testing.B) {
	const n = 100
	eachSide(b, nil, func(b *testing.B, srv *server, s side) {
		ctx := b.Context()
		ss := bench.NewStreams(fmt.Sprintf("hundred-%d", runs.Add(1)), 100)
		cpu := bench.Start(b, srv.pool(b))
		for b.Loop() {
			stream, v := ss.Take(n)
			if _, err := s.append(ctx, stream, v, n); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

// importEvents returns the number of events of an import: BENCH_IMPORT_EVENTS
// or importEventsDefault.
func importEvents(b *testing.B) int {
	s := os.Getenv(EnvImportEvents)
	if s == "" {
		return importEventsDefault
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n%perStream != 0 {
		b.Fatalf("%s=%q: want a positive multiple of %d", EnvImportEvents, s, perStream)
	}
	return n
}

// Loading a history of new streams, 100 events each: strata's Import (COPY
// in one transaction), a CopyFrom into the plain table, and for the peer,
// which has no bulk import, one Save per stream.
func BenchmarkImport(b *testing.B) {
	n := importEvents(b)
	b.Logf("%d events per import (%s)", n, EnvImportEvents)
	eachSide(b, nil, func(b *testing.B, srv *server, s side) {
		ctx := b.Context()
		cpu := bench.Start(b, srv.pool(b))
		for b.Loop() {
			if err := s.importEvents(ctx, fmt.Sprintf("import-%d", runs.Add(1)), n, perStream); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

// Reading a log of 10,000 events from the start and decoding each into an
// OrderPlaced: strata's ReadAll in pages of 500 decoded with a registry,
// pages of 500 by position from the plain table, and the peer's global
// reader (All) run to the end by a projection.
func BenchmarkReadAll(b *testing.B) {
	prepare := func(b *testing.B, srv *server, sides map[string]side) {
		ctx := b.Context()
		for _, name := range sideNames {
			s := sides[name]
			if err := s.importEvents(ctx, "read", readAllEvents, perStream); err != nil {
				b.Fatal(err)
			}
			if err := s.settle(ctx, readAllEvents); err != nil {
				b.Fatal(err)
			}
			// So that every side reads a settled table with statistics.
			if _, err := srv.pool(b).Exec(ctx, "VACUUM ANALYZE "+s.table()); err != nil {
				b.Fatal(err)
			}
		}
	}
	eachSide(b, prepare, func(b *testing.B, srv *server, s side) {
		ctx := b.Context()
		cpu := bench.Start(b, srv.pool(b))
		for b.Loop() {
			read := 0
			if err := s.readAll(ctx, func(readEvent) { read++ }); err != nil {
				b.Fatal(err)
			}
			if read != readAllEvents {
				b.Fatalf("read %d events, want %d", read, readAllEvents)
			}
		}
		cpu.Stop(b)
		b.ReportMetric(float64(b.N*readAllEvents)/b.Elapsed().Seconds(), "events/s")
	})
}

// Single-event appends from 8 clients while a live reader reads from the
// head of the log: strata's Subscribe, a naive "position > last read"
// reader of the plain table, and a peer projection on its global reader
// (Run, triggered after each Save). The time is the writers'; afterwards
// the benchmark waits until the reader has seen the last event written and
// reports how many written events it never saw (skipped, skipped-%).
// Strata must skip none: the benchmark fails if it does.
func BenchmarkLiveRead(b *testing.B) {
	eachSide(b, nil, func(b *testing.B, srv *server, s side) {
		cpu := bench.Start(b, srv.pool(b))
		res, err := liveRead(b.Context(), s, b.N, func() {
			b.StopTimer()
			cpu.Stop(b)
		})
		if err != nil {
			b.Fatal(err)
		}
		skippedMetrics(b, res)
		if _, ok := s.(*strataSide); ok && cmp.Or(res.Skipped, res.Twice, res.Foreign) != 0 {
			b.Errorf("strata's live reader: %+v, want no event skipped, seen twice or foreign", res)
		}
	})
}
