package pgsink_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

type itemAdded struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[itemAdded](reg, "ItemAdded")
	return reg
}

type env struct {
	pool  *pgxpool.Pool
	store *pgstore.Store
	sink  *pgsink.Sink
	reg   *es.Registry
}

func newEnv(t *testing.T) env {
	t.Helper()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.Options{MaxConns: 24})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: 50 * time.Millisecond})
	if _, err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet, LeaseCheck: 50 * time.Millisecond})
	if _, err := sink.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := env{pool: pool, store: store, sink: sink, reg: newRegistry()}
	e.exec(t, `CREATE TABLE {{schema}}.applied (event_id uuid PRIMARY KEY, n int NOT NULL)`)
	e.exec(t, `CREATE TABLE {{schema}}.stock (sku text PRIMARY KEY, qty bigint NOT NULL, version bigint NOT NULL)`)
	return e
}

func (e env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	sql = replaceSchema(sql, e.sink.Schema())
	if _, err := e.pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func replaceSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{schema}.Sanitize())
}

// importEvents stores n ItemAdded events over streams of 10 events.
func (e env) importEvents(t *testing.T, n int) es.Position {
	t.Helper()
	res, err := e.store.Import(t.Context(), func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range n {
			if !yield(pgstore.ImportEvent{Stream: fmt.Sprintf("s%d-%d", n, i/10), Event: es.EventData{
				Type: "ItemAdded", Data: fmt.Appendf(nil, `{"sku":"sku-%d","qty":%d}`, i%100, i),
			}}, nil) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

func (e env) appendOne(t *testing.T, stream, typ, data string) es.AppendResult {
	t.Helper()
	res, err := e.store.Append(t.Context(), stream, es.Any, es.EventData{Type: typ, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// stock keeps the last quantity per SKU, and counts how often each event
// was applied.
type stock struct {
	name string
	// before, when set, runs at the start of every batch.
	before func(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error
	// fail, when set, fails the batch on the events it returns true for.
	fail func(projections.Event) bool
}

func (p stock) Name() string      { return p.name }
func (p stock) Handles() []string { return []string{"ItemAdded", "ItemRemoved"} }

func (p stock) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	if p.before != nil {
		if err := p.before(ctx, tx, events); err != nil {
			return err
		}
	}
	ids := make([]uuid.UUID, 0, len(events))
	last := map[string]int{} // sku -> index into the columns
	var (
		skus     []string
		qtys, vs []int64
	)
	for _, ev := range events {
		if p.fail != nil && p.fail(ev) {
			return fmt.Errorf("refusing %s@%d", ev.Record.Stream, ev.Record.Version)
		}
		ids = append(ids, ev.Record.ID)
		e, ok := ev.Data.(itemAdded)
		if !ok {
			continue
		}
		if i, ok := last[e.SKU]; ok {
			qtys[i], vs[i] = e.Qty, int64(ev.Record.Position.Prepare)
			continue
		}
		last[e.SKU] = len(skus)
		skus, qtys, vs = append(skus, e.SKU), append(qtys, e.Qty), append(vs, int64(ev.Record.Position.Prepare))
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("applied").Sanitize()+` AS a (event_id, n)
		SELECT id, 1 FROM unnest($1::uuid[]) AS u(id)
		ON CONFLICT (event_id) DO UPDATE SET n = a.n + 1`, ids); err != nil {
		return err
	}
	if len(skus) == 0 {
		return nil
	}
	_, err := tx.Upsert(ctx, pgsink.Upsert{
		Table: tx.Table("stock"), Columns: []string{"sku", "qty", "version"},
		Types: []string{"text", "bigint", "bigint"}, Key: []string{"sku"},
	}, skus, qtys, vs)
	return err
}

// checkAppliedOnce checks that every declared event up to the head was
// applied exactly once, except those in skip.
func (e env) checkAppliedOnce(t *testing.T, skip map[uuid.UUID]bool) {
	t.Helper()
	var wrong, missing, extra int
	err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT
		count(*) FILTER (WHERE a.n <> 1),
		count(*) FILTER (WHERE a.n IS NULL AND NOT (ev.event_id = ANY($1))),
		(SELECT count(*) FROM {{schema}}.applied WHERE event_id = ANY($1))
		FROM {{schema}}.events ev LEFT JOIN {{schema}}.applied a USING (event_id)
		WHERE ev.type IN ('ItemAdded', 'ItemRemoved')`, e.sink.Schema()), keys(skip)).Scan(&wrong, &missing, &extra)
	if err != nil {
		t.Fatal(err)
	}
	if wrong != 0 || missing != 0 || extra != 0 {
		t.Errorf("%d events applied more than once, %d never, %d that should not have been", wrong, missing, extra)
	}
}

func keys(m map[uuid.UUID]bool) []uuid.UUID {
	out := []uuid.UUID{}
	for k := range m {
		out = append(out, k)
	}
	return out
}

func start[Tx any](ctx context.Context, w *projections.Worker[Tx]) <-chan error {
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func (e env) waitFor(t *testing.T, name string, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, e.sink, name, pos); err != nil {
		st, _ := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.sink}, name)
		t.Fatalf("%v; status %+v", err, st)
	}
}

func (p stock) Tables() []string { return []string{"applied", "stock"} }

func (p stock) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("applied").Sanitize()+` (event_id uuid PRIMARY KEY, n int NOT NULL);
		CREATE TABLE `+tx.Table("stock").Sanitize()+` (sku text PRIMARY KEY, qty bigint NOT NULL, version bigint NOT NULL)`)
	return err
}

// waitVisible waits until readers of the log see pos: another test's open
// transaction may hold them back for a while.
func (e env) waitVisible(t *testing.T, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		head, err := e.store.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !head.Before(pos) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not become visible; head is %s", pos, head)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
