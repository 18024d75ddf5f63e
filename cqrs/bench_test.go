package cqrs_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// The benchmarks compare a command dispatched through the bus with the
// store calls a hand-written handler would make for the same event, on
// PostgreSQL. Each X/strata pairs with X/raw (see internal/cmd/benchratio).

var benchSeq atomic.Int64

func benchStore(b *testing.B) *pgstore.Store {
	b.Helper()
	pool, schema := pgtest.NewSchema(b)
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchMetadata is metadata of the size the bus stores, for the raw appends.
var benchMetadata = es.Metadata{
	es.MetaCorrelationID: "0193e1b2-6a52-7c8e-9d1f-2b3c4d5e6f70",
	es.MetaCausationID:   "0193e1b2-6a52-7c8e-9d1f-2b3c4d5e6f70",
	es.MetaCommandType:   "cqrs_test.OpenAccount",
}

// BenchmarkOnNew: one command that creates an aggregate with one event.
// Each side has a fresh schema, so neither writes to a bigger table.
func BenchmarkOnNew(b *testing.B) {
	ctx := context.Background()
	b.Run("strata", func(b *testing.B) {
		bus, _ := newAccountsOn(benchStore(b))
		b.ReportAllocs()
		for b.Loop() {
			id := fmt.Sprint("s", benchSeq.Add(1))
			if _, err := bus.Dispatch(ctx, OpenAccount{AccountID: id, Owner: "ann"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		store := benchStore(b)
		_, accounts := newAccountsOn(store)
		reg := accounts.Registry()
		b.ReportAllocs()
		for b.Loop() {
			check(b, rawOpen(ctx, store, reg, fmt.Sprint("r", benchSeq.Add(1))))
		}
	})
}

// interleave runs strata and raw by turns, one operation each, and reports
// the time of each side and raw/strata, the throughput ratio (ns/op is the
// time of one of each). Taking turns
// exposes both sides to the same load, which a shared machine varies a lot
// between the separate X/strata and X/raw runs.
func interleave(b *testing.B, strata, raw func(i int)) {
	b.Helper()
	timed := func(f func(int), i int) time.Duration {
		start := time.Now()
		f(i)
		return time.Since(start)
	}
	var ts, tr time.Duration
	n := 0
	for b.Loop() {
		n++
		if n%2 == 1 {
			ts += timed(strata, n)
			tr += timed(raw, n)
		} else {
			tr += timed(raw, n)
			ts += timed(strata, n)
		}
	}
	b.ReportMetric(float64(ts.Nanoseconds())/float64(n), "strata-ns/op")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(n), "raw-ns/op")
	b.ReportMetric(float64(tr)/float64(ts), "raw/strata")
}

// BenchmarkInterleaved runs the pairs of BenchmarkOnNew and
// BenchmarkOnExisting by turns (see interleave), on one schema.
func BenchmarkInterleaved(b *testing.B) {
	ctx := context.Background()
	store := benchStore(b)
	bus, accounts := newAccountsOn(store)
	reg := accounts.Registry()
	b.Run("OnNew", func(b *testing.B) {
		interleave(b, func(int) {
			_, err := bus.Dispatch(ctx, OpenAccount{AccountID: fmt.Sprint("s", benchSeq.Add(1)), Owner: "ann"})
			check(b, err)
		}, func(int) {
			check(b, rawOpen(ctx, store, reg, fmt.Sprint("r", benchSeq.Add(1))))
		})
	})
	b.Run("OnExisting", func(b *testing.B) {
		const streams = 200
		prefix := fmt.Sprint("e", benchSeq.Add(1), "-")
		for i := range streams {
			for _, side := range []string{"s", "r"} {
				_, err := bus.Dispatch(ctx, OpenAccount{AccountID: fmt.Sprint(prefix, side, i), Owner: "ann"})
				check(b, err)
			}
		}
		interleave(b, func(i int) {
			_, err := bus.Dispatch(ctx, Deposit{AccountID: fmt.Sprint(prefix, "s", i%streams), Amount: 1})
			check(b, err)
		}, func(i int) {
			check(b, rawDeposit(ctx, store, reg, fmt.Sprint(prefix, "r", i%streams)))
		})
	})
}

func check(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOnExisting: one command that loads an aggregate of a few events,
// decides and appends one event, against reading the stream, applying its
// events and appending by hand.
func BenchmarkOnExisting(b *testing.B) {
	ctx := context.Background()
	const streams = 200
	setup := func(b *testing.B) (*pgstore.Store, *cqrs.Bus, *es.Registry) {
		store := benchStore(b)
		bus, accounts := newAccountsOn(store)
		for i := range streams {
			if _, err := bus.Dispatch(ctx, OpenAccount{AccountID: fmt.Sprint(i), Owner: "ann"}); err != nil {
				b.Fatal(err)
			}
		}
		return store, bus, accounts.Registry()
	}

	b.Run("strata", func(b *testing.B) {
		_, bus, _ := setup(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := bus.Dispatch(ctx, Deposit{AccountID: fmt.Sprint(i % streams), Amount: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		store, _, reg := setup(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			check(b, rawDeposit(ctx, store, reg, fmt.Sprint(i%streams)))
		}
	})
}

// rawOpen does by hand what the open handler does: encode the event and
// append it to a new stream.
func rawOpen(ctx context.Context, store es.Store, reg *es.Registry, id string) error {
	data, err := reg.Encode(AccountOpened{AccountID: id, Owner: "ann"}, benchMetadata)
	if err != nil {
		return err
	}
	_, err = store.Append(ctx, "account-"+id, es.NoStream, data)
	return err
}

// rawDeposit does by hand what the deposit handler does: read the stream,
// apply its events, decide and append with the expected version.
func rawDeposit(ctx context.Context, store es.Store, reg *es.Registry, id string) error {
	recs, err := store.ReadStream(ctx, "account-"+id, es.ReadStreamOptions{})
	if err != nil {
		return err
	}
	acc := newAccount(id)
	for _, rec := range recs {
		e, err := reg.Decode(rec)
		if err != nil {
			return err
		}
		if err := acc.Apply(e); err != nil {
			return err
		}
	}
	if !acc.Open {
		return errAccountClosed
	}
	data, err := reg.Encode(MoneyDeposited{AccountID: id, Amount: 1}, benchMetadata)
	if err != nil {
		return err
	}
	_, err = store.Append(ctx, "account-"+id, es.Exact(recs[len(recs)-1].Version), data)
	return err
}

// nopStore appends nothing and takes no time, so BenchmarkNoIO measures what
// the bus and the handler cost on their own.
type nopStore struct{ es.Store }

func (nopStore) Append(_ context.Context, stream string, _ es.ExpectedVersion, _ ...es.EventData) (es.AppendResult, error) {
	return es.AppendResult{Stream: stream, Version: 1, Position: es.Position{Commit: 1, Prepare: 1}}, nil
}

// BenchmarkNoIO is BenchmarkOnNew on a store that does nothing: the
// framework's own cost per command, without I/O.
func BenchmarkNoIO(b *testing.B) {
	ctx := context.Background()
	b.Run("strata", func(b *testing.B) {
		bus, _ := newAccountsOn(nopStore{})
		b.ReportAllocs()
		for b.Loop() {
			id := fmt.Sprint("s", benchSeq.Add(1))
			if _, err := bus.Dispatch(ctx, OpenAccount{AccountID: id, Owner: "ann"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		store := nopStore{}
		_, accounts := newAccountsOn(store)
		reg := accounts.Registry()
		b.ReportAllocs()
		for b.Loop() {
			check(b, rawOpen(ctx, store, reg, fmt.Sprint("r", benchSeq.Add(1))))
		}
	})
}
