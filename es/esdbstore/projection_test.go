package esdbstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/esdbstore"
	"github.com/stratadev/strata/es/esdbstore/internal/esdbtest"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type itemAdded struct {
	Order string `json:"order"`
	Price int64  `json:"price"`
}

// totals is a Postgres read model: the number of items and the total price
// of each order, and how often each event was applied.
type totals struct{}

func (totals) Name() string      { return "order-totals" }
func (totals) Handles() []string { return []string{"ItemAdded"} }

func (totals) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(itemAdded)
		if _, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("order_totals").Sanitize()+` AS t (order_id, items, total)
			VALUES ($1, 1, $2) ON CONFLICT (order_id) DO UPDATE SET items = t.items + 1, total = t.total + EXCLUDED.total`,
			e.Order, e.Price); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("applied").Sanitize()+` AS a (event_id, n, correlation_id)
			VALUES ($1, 1, $2) ON CONFLICT (event_id) DO UPDATE SET n = a.n + 1`,
			ev.Record.ID, ev.Record.Metadata[es.MetaCorrelationID]); err != nil {
			return err
		}
	}
	return nil
}

type pgEnv struct {
	pool   pgxExec
	sink   *pgsink.Sink
	schema string
}

type pgxExec interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func newPG(t *testing.T) pgEnv {
	t.Helper()
	pool, schema := pgtest.NewSchema(t)
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := sink.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return strings.ReplaceAll(s, "{{schema}}", pgx.Identifier{schema}.Sanitize()) }
	for _, sql := range []string{
		`CREATE TABLE {{schema}}.order_totals (order_id text PRIMARY KEY, items int NOT NULL, total bigint NOT NULL)`,
		`CREATE TABLE {{schema}}.applied (event_id uuid PRIMARY KEY, n int NOT NULL, correlation_id text)`,
	} {
		if _, err := pool.Exec(t.Context(), q(sql)); err != nil {
			t.Fatal(err)
		}
	}
	return pgEnv{pool: pool, sink: sink, schema: schema}
}

func (e pgEnv) q(s string) string {
	return strings.ReplaceAll(s, "{{schema}}", pgx.Identifier{e.schema}.Sanitize())
}

// TestProjectionOnPostgres builds a Postgres read model with the unchanged
// projection worker from events stored through esdbstore, and restarts the
// server in the middle: the worker's subscription re-subscribes from its
// last position, and every event is applied exactly once.
func TestProjectionOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := esdbtest.Start(t)
	store := open(t, esdbstore.Config{ConnectionString: srv.URL(), Logger: quiet})
	pg := newPG(t)
	reg := es.NewRegistry()
	es.Register[itemAdded](reg, "ItemAdded")

	const orders, perRound = 5, 20
	want := map[string][2]int64{} // order -> items, total
	n := 0
	appendRound := func() es.AppendResult {
		t.Helper()
		var last es.AppendResult
		for range perRound {
			order := fmt.Sprintf("order-%d", n%orders)
			e := itemAdded{Order: order, Price: int64(n + 1)}
			d, err := reg.Encode(e, es.Metadata{es.MetaCorrelationID: fmt.Sprintf("req-%d", n)})
			if err != nil {
				t.Fatal(err)
			}
			if last, err = store.Append(ctx, order, es.Any, d); err != nil {
				t.Fatal(err)
			}
			w := want[order]
			want[order] = [2]int64{w[0] + 1, w[1] + e.Price}
			n++
		}
		return last
	}

	appendRound()
	runCtx, stop := context.WithCancel(ctx)
	w := projections.NewWorker(store, reg, pg.sink, totals{}, projections.Config{Logger: quiet, BatchSize: 7})
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	if err := projections.WaitFor(ctx, pg.sink, "order-totals", appendRound().Position); err != nil {
		t.Fatal(err)
	}

	// Drop every connection while the worker is subscribed, and append once
	// it has re-subscribed.
	resubscribed := srv.Subscribed()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-resubscribed:
	case <-ctx.Done():
		t.Fatal("the worker did not re-subscribe")
	}
	if err := projections.WaitFor(ctx, pg.sink, "order-totals", appendRound().Position); err != nil {
		t.Fatal(err)
	}

	for order, w := range want {
		var items, total int64
		if err := pg.pool.QueryRow(ctx, pg.q(`SELECT items, total FROM {{schema}}.order_totals WHERE order_id = $1`), order).Scan(&items, &total); err != nil {
			t.Fatalf("read model row of %s: %v", order, err)
		}
		if items != w[0] || total != w[1] {
			t.Errorf("%s: %d items for %d; want %d for %d", order, items, total, w[0], w[1])
		}
	}
	var count, maxN int64
	var corr string
	if err := pg.pool.QueryRow(ctx, pg.q(`SELECT count(*), max(n), min(correlation_id) FROM {{schema}}.applied`)).Scan(&count, &maxN, &corr); err != nil {
		t.Fatal(err)
	}
	if count != int64(n) || maxN != 1 || !strings.HasPrefix(corr, "req-") {
		t.Errorf("applied %d distinct events, the most often %d times, correlation %q; want %d, once each, with metadata", count, maxN, corr, n)
	}
}

// TestDecodeFailureStopsProjection appends an event whose data does not fit
// its registered type: the projection stalls at it and says where.
func TestDecodeFailureStopsProjection(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newTestServerStore(t)
	pg := newPG(t)
	reg := es.NewRegistry()
	es.Register[itemAdded](reg, "ItemAdded")
	if _, err := store.Append(ctx, "order-bad", es.NoStream, es.EventData{Type: "ItemAdded", Data: []byte(`{"order":"order-bad","price":"twelve"}`)}); err != nil {
		t.Fatal(err)
	}
	err := projections.NewWorker(store, reg, pg.sink, totals{}, projections.Config{Logger: quiet}).Run(ctx)
	stalled, ok := errors.AsType[*projections.StalledError](err)
	if !ok {
		t.Fatalf("worker over an undecodable event: %v; want a StalledError", err)
	}
	if stalled.Failure.Stream != "order-bad" || stalled.Failure.Version != 1 || stalled.Failure.Type != "ItemAdded" {
		t.Errorf("stalled at %+v; want order-bad@1 of type ItemAdded", stalled.Failure)
	}
}
