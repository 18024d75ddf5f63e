package pgstore_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/metrictest"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	for _, group := range []int{1, 0} {
		t.Run(map[int]string{1: "alone", 0: "grouped"}[group], func(t *testing.T) {
			t.Parallel()
			r := metrictest.New(t)
			s, pool := newStore(t, pgstore.Config{MeterProvider: r.Provider, GroupCommitMax: group, PollInterval: time.Hour})
			ctx := t.Context()
			a, b := ev("T", `1`), ev("T", `2`)
			if _, err := s.Append(ctx, "m", es.NoStream, a, b); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append(ctx, "m", es.NoStream, a, b); err != nil { // a retry
				t.Fatal(err)
			}
			if _, err := s.Append(ctx, "m", es.NoStream, ev("T", `3`)); err == nil {
				t.Fatal("append at the wrong version: no error")
			}
			if _, err := s.Append(ctx, "m", es.Exact(2), es.EventData{Type: "", Data: []byte(`{}`)}); err == nil {
				t.Fatal("append without a type: no error")
			}
			if _, err := s.Append(ctx, "m", es.Exact(2), ev("T", `3`)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ReadStream(ctx, "m", es.ReadStreamOptions{}); err != nil {
				t.Fatal(err)
			}

			// A subscription that waits behind an open transaction.
			live := subscribe(t, s, es.SubscribeOptions{})
			for range 3 {
				live.next(t)
			}
			tx, _, _ := holdOpen(t, s, pool, "held", ev("H", `{}`))
			if _, err := s.Append(ctx, "after", es.NoStream, ev("A", `{}`)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if v, _ := r.Value(t, "strata.store.subscription.held_back"); v > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("strata.store.subscription.held_back stayed 0 while a transaction held the subscription back")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			live.next(t)
			live.next(t)

			ms := r.Collect(t)
			out := pgstore.AttrOutcome.String
			for _, c := range []struct {
				name  string
				attrs []attribute.KeyValue
				want  float64
			}{
				{"strata.store.appends", []attribute.KeyValue{out(pgstore.OutcomeAppended)}, 4}, // AppendTx in holdOpen, too
				{"strata.store.appends", []attribute.KeyValue{out(pgstore.OutcomeIdempotent)}, 1},
				{"strata.store.appends", []attribute.KeyValue{out(pgstore.OutcomeConflict)}, 1},
				{"strata.store.appends", []attribute.KeyValue{out(pgstore.OutcomeInvalid)}, 1},
				{"strata.store.append.duration", nil, 7},
				{"strata.store.append.events", nil, 4}, // recordings: the appends that stored events
				{"strata.store.reads", []attribute.KeyValue{pgstore.AttrRead.String("stream")}, 1},
				{"strata.store.read.events", []attribute.KeyValue{pgstore.AttrRead.String("stream")}, 3},
			} {
				if got, _ := metrictest.Value(ms, c.name, c.attrs...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.attrs, got, c.want)
				}
			}
			if got, _ := metrictest.Value(ms, "strata.store.subscription.pages"); got < 2 {
				t.Errorf("strata.store.subscription.pages = %v, want at least 2", got)
			}
			if got, _ := metrictest.Value(ms, "strata.store.read.events", pgstore.AttrRead.String("all")); got < 5 {
				t.Errorf("strata.store.read.events{all} = %v, want at least the 5 events subscribed to", got)
			}
		})
	}
}
