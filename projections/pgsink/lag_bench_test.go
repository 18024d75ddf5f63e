package pgsink_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// timedSink measures, for every event of a committed batch, the time from
// its recorded_at to the commit.
type timedSink struct {
	*pgsink.Sink
	mu   sync.Mutex
	lags []time.Duration
}

func (s *timedSink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *pgsink.Tx) error) error {
	if err := s.Sink.Apply(ctx, p, handle); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	for _, ev := range p.Events {
		s.lags = append(s.lags, now.Sub(ev.Record.RecordedAt))
	}
	s.mu.Unlock()
	return nil
}

// BenchmarkLiveLag appends 2,000 events/s for STRATA_LAG_SECONDS (default
// 5) from 4 writers, one event per append, while a worker keeps the
// lastQty read model, and reports percentiles of the lag from an event's
// recorded_at to the commit of the batch that applied it.
func BenchmarkLiveLag(b *testing.B) {
	secs := 5
	if s := os.Getenv("STRATA_LAG_SECONDS"); s != "" {
		if _, err := fmt.Sscan(s, &secs); err != nil || secs <= 0 {
			b.Fatalf("STRATA_LAG_SECONDS=%q: want a positive number", s)
		}
	}
	const rate, writers = 2000, 4
	pool, schema := pgtest.NewSchemaWith(b, pgtest.Options{MaxConns: 16})
	ctx := b.Context()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	base := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := base.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if err := base.BeginFunc(ctx, lastQty{}.Setup); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		sink := &timedSink{Sink: base}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- projections.NewWorker(store, newRegistry(), projections.Sink[*pgsink.Tx](sink), lastQty{}, projections.Config{Logger: quiet}).Run(wctx)
		}()
		var (
			wg       sync.WaitGroup
			appended atomic.Int64
			last     = make([]es.Position, writers)
		)
		began := time.Now()
		for w := range writers {
			wg.Go(func() {
				every := time.Second * writers / rate
				tick := time.NewTicker(every)
				defer tick.Stop()
				for i := 0; time.Since(began) < time.Duration(secs)*time.Second; i++ {
					<-tick.C
					res, err := store.Append(ctx, fmt.Sprintf("w%d-%d", w, i/100), es.Any, es.EventData{
						Type: "ItemAdded", Data: fmt.Appendf(nil, `{"sku":"sku-%d","qty":%d}`, i%1000, i),
					})
					if err != nil {
						b.Error(err)
						return
					}
					last[w] = res.Position
					appended.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(began)
		for _, pos := range last {
			wait, wcancel := context.WithTimeout(ctx, time.Minute)
			err := projections.WaitFor(wait, base, "last_qty", pos)
			wcancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		lags := sink.lags
		slices.Sort(lags)
		pct := func(p float64) float64 {
			return float64(lags[min(int(p*float64(len(lags))), len(lags)-1)]) / float64(time.Millisecond)
		}
		b.ReportMetric(float64(appended.Load())/elapsed.Seconds(), "appends/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(1), "max-ms")
	}
}
