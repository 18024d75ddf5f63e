package pgsinktest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
	"github.com/stratadev/strata/projections/pgsink/pgsinktest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type itemAdded struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

type itemRemoved struct {
	SKU string `json:"sku"`
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[itemAdded](reg, "ItemAdded")
	es.Register[itemRemoved](reg, "ItemRemoved")
	return reg
}

// stock keeps the quantity per SKU.
type stock struct{}

func (stock) Name() string      { return "stock" }
func (stock) Handles() []string { return []string{"ItemAdded", "ItemRemoved"} }
func (stock) Tables() []string  { return []string{"stock"} }

func (stock) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("stock").Sanitize()+` (sku text PRIMARY KEY, qty bigint NOT NULL, last_stream text)`)
	return err
}

func (stock) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		var err error
		switch e := ev.Data.(type) {
		case itemAdded:
			_, err = tx.Exec(ctx, `INSERT INTO `+tx.Table("stock").Sanitize()+` AS s (sku, qty, last_stream) VALUES ($1, $2, $3)
				ON CONFLICT (sku) DO UPDATE SET qty = s.qty + excluded.qty, last_stream = excluded.last_stream`, e.SKU, e.Qty, ev.Record.Stream)
		case itemRemoved:
			_, err = tx.Exec(ctx, `DELETE FROM `+tx.Table("stock").Sanitize()+` WHERE sku = $1`, e.SKU)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func scenario(t *testing.T) pgsinktest.Scenario {
	pool, schema := pgtest.NewSchema(t)
	return pgsinktest.Scenario{Pool: pool, Schema: schema, Registry: newRegistry(), Projection: stock{}}
}

func TestGivenThenRows(t *testing.T) {
	t.Parallel()
	res := scenario(t).Given(t,
		pgsinktest.Event{Stream: "a", Data: itemAdded{SKU: "tea", Qty: 2}},
		pgsinktest.Event{Stream: "b", Data: itemAdded{SKU: "tea", Qty: 3}},
		pgsinktest.Event{Data: es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"jam","qty":1}`)}},
		pgsinktest.Event{Data: itemAdded{SKU: "salt", Qty: 1}},
		pgsinktest.Event{Data: itemRemoved{SKU: "salt"}},
		pgsinktest.Event{Data: es.EventData{Type: "Undeclared", Data: []byte(`{}`)}},
	)
	res.Rows(`SELECT sku, qty, last_stream FROM {{schema}}.stock ORDER BY sku`,
		[]any{"jam", 1, "stream"},
		[]any{"tea", int64(5), "b"},
	)
	res.Rows(`SELECT count(*) FROM {{schema}}.stock WHERE sku = 'salt'`, []any{0})
	if res.Checkpoint.Position.IsZero() || res.Checkpoint.State != projections.StateRunning {
		t.Errorf("checkpoint %+v; want running past every event", res.Checkpoint)
	}
}

// fakeTB records failures instead of failing the test.
type fakeTB struct {
	testing.TB
	mu    sync.Mutex
	errs  []string
	fatal bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn with a fake TB in a goroutine of its own, as Fatalf ends
// the goroutine, and returns the failures.
func run(t *testing.T, fn func(tb testing.TB)) (errs []string, fatal bool) {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.errs, f.fatal
}

func TestRowsFailsWhenTheyDiffer(t *testing.T) {
	t.Parallel()
	sc := scenario(t)
	errs, fatal := run(t, func(tb testing.TB) {
		res := sc.Given(tb, pgsinktest.Event{Data: itemAdded{SKU: "tea", Qty: 2}}, pgsinktest.Event{Data: itemAdded{SKU: "jam", Qty: 1}})
		res.Rows(`SELECT sku, qty FROM {{schema}}.stock ORDER BY sku`,
			[]any{"jam", 1},
			[]any{"tea", 3},
			[]any{"zzz", 1},
		)
	})
	if fatal || len(errs) != 1 {
		t.Fatalf("failures %q (fatal %v); want one", errs, fatal)
	}
	msg := errs[0]
	for _, want := range []string{"expected", "actual", `  1  ("jam", 1)`, `!   2  ("tea", 3)`, `("tea", 2)`, `!   3  ("zzz", 1)`, "(none)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, msg)
		}
	}
}

func TestGivenFailsOnAStall(t *testing.T) {
	t.Parallel()
	sc := scenario(t)
	errs, fatal := run(t, func(tb testing.TB) {
		sc.Given(tb,
			pgsinktest.Event{Data: itemAdded{SKU: "tea", Qty: 2}},
			pgsinktest.Event{Stream: "bad", Data: es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":"many"}`)}},
		)
		tb.Errorf("Given returned")
	})
	if !fatal || len(errs) != 1 || !strings.Contains(errs[0], "stalled at event bad@1") {
		t.Fatalf("failures %q (fatal %v); want a stall at bad@1", errs, fatal)
	}
	// Under PolicyDeadLetter the scenario goes on.
	sc2 := scenario(t)
	sc2.Worker.ErrorPolicy = projections.PolicyDeadLetter
	res := sc2.Given(t,
		pgsinktest.Event{Stream: "bad", Data: es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":"many"}`)}},
		pgsinktest.Event{Data: itemAdded{SKU: "tea", Qty: 2}},
	)
	res.Rows(`SELECT sku, qty FROM {{schema}}.stock`, []any{"tea", 2})
	if res.Checkpoint.Failure == nil || res.Checkpoint.Failure.Stream != "bad" {
		t.Errorf("checkpoint %+v; want the dead letter's failure", res.Checkpoint)
	}
}

func TestRowsFailsOnABadQuery(t *testing.T) {
	t.Parallel()
	sc := scenario(t)
	errs, _ := run(t, func(tb testing.TB) {
		sc.Given(tb).Rows(`SELECT nope FROM {{schema}}.stock`)
	})
	if len(errs) != 1 || !strings.Contains(errs[0], "nope") {
		t.Fatalf("failures %q; want the query's error", errs)
	}
}
