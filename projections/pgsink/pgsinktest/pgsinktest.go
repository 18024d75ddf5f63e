// Package pgsinktest tests a PostgreSQL projection in isolation: given
// these events, the read model holds these rows. The events go through the
// real path, a [projections.Worker] and a [pgsink.Sink] on the caller's
// database, from an in-memory log:
//
//	sc := pgsinktest.Scenario{Pool: pool, Schema: schema, Registry: reg, Projection: orderViews{}}
//	res := sc.Given(t,
//		pgsinktest.Event{Stream: "order-1", Data: OrderPlaced{ID: "order-1", Product: "p-1"}},
//		pgsinktest.Event{Stream: "product-p-1", Data: ProductRenamed{ID: "p-1", Name: "Tea"}},
//	)
//	res.Rows(`SELECT order_id, product_name FROM {{schema}}.order_views ORDER BY 1`,
//		[]any{"order-1", "Tea"},
//	)
package pgsinktest

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// Timeout bounds how long [Scenario.Given] waits for the projection.
const Timeout = 30 * time.Second

// Scenario is a projection under test and where its read model lives.
type Scenario struct {
	// Pool is the test database; required. The caller owns it.
	Pool *pgxpool.Pool
	// Schema holds the sink's tables and the read model; required. Give
	// each test a schema of its own.
	Schema string
	// Registry decodes the events, and encodes those given as Go values;
	// required.
	Registry *es.Registry
	// Projection is the projection under test; required. When it is a
	// [pgsink.Rebuildable], its Setup creates its tables.
	Projection projections.Projection[*pgsink.Tx]
	// Setup, when set, creates the read model's tables instead.
	Setup func(ctx context.Context, tx *pgsink.Tx) error
	// Worker configures the worker, for example its ErrorPolicy. Its
	// Logger defaults to discarding.
	Worker projections.Config
}

// Event is an event to give the projection.
type Event struct {
	// Stream defaults to "stream".
	Stream string
	// Data is an [es.EventData], or a value of a type registered in the
	// scenario's Registry.
	Data     any
	Metadata es.Metadata
}

// Result is the read model after [Scenario.Given].
type Result struct {
	t      testing.TB
	pool   *pgxpool.Pool
	schema string
	// Checkpoint is the projection's checkpoint after the events.
	Checkpoint projections.Checkpoint
}

// Given creates the read model's tables, stores events in an in-memory log
// and runs the projection until it has applied them all. It fails t when
// anything goes wrong, including a stall of the projection (with the
// event and the error).
func (s Scenario) Given(t testing.TB, events ...Event) *Result {
	t.Helper()
	if s.Pool == nil || s.Schema == "" || s.Registry == nil || s.Projection == nil {
		t.Fatalf("pgsinktest: Scenario needs Pool, Schema, Registry and Projection")
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	sink := pgsink.New(s.Pool, pgsink.Config{Schema: s.Schema, Logger: quiet})
	if _, err := sink.Migrate(ctx); err != nil {
		t.Fatalf("pgsinktest: %v", err)
	}
	setup := s.Setup
	if r, ok := s.Projection.(pgsink.Rebuildable); ok && setup == nil {
		setup = r.Setup
	}
	if setup != nil {
		if err := sink.BeginFunc(ctx, setup); err != nil {
			t.Fatalf("pgsinktest: set up the tables of %s: %v", s.Projection.Name(), err)
		}
	}

	store := memstore.New()
	for i, ev := range events {
		data, err := s.eventData(ev)
		if err != nil {
			t.Fatalf("pgsinktest: event %d: %v", i, err)
		}
		stream := ev.Stream
		if stream == "" {
			stream = "stream"
		}
		if _, err := store.Append(ctx, stream, es.Any, data); err != nil {
			t.Fatalf("pgsinktest: event %d: %v", i, err)
		}
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatalf("pgsinktest: %v", err)
	}

	cfg := s.Worker
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.BatchWait = -1
	w := projections.NewWorker(store, s.Registry, sink, s.Projection, cfg)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	waitErr := projections.WaitFor(ctx, sink, s.Projection.Name(), head)
	stop()
	runErr := <-done
	if err := errors.Join(waitErr, runErr); err != nil {
		var stalled *projections.StalledError
		if errors.As(err, &stalled) {
			t.Fatalf("pgsinktest: %s stalled at %s", s.Projection.Name(), stalled.Failure)
		}
		t.Fatalf("pgsinktest: run %s: %v", s.Projection.Name(), err)
	}
	cp, err := sink.Checkpoint(ctx, s.Projection.Name())
	if err != nil {
		t.Fatalf("pgsinktest: %v", err)
	}
	return &Result{t: t, pool: s.Pool, schema: s.Schema, Checkpoint: cp}
}

func (s Scenario) eventData(ev Event) (es.EventData, error) {
	switch d := ev.Data.(type) {
	case es.EventData:
		if ev.Metadata != nil {
			d.Metadata = ev.Metadata
		}
		return d, nil
	case *es.EventData:
		return s.eventData(Event{Stream: ev.Stream, Data: *d, Metadata: ev.Metadata})
	case nil:
		return es.EventData{}, errors.New("no Data")
	}
	return s.Registry.Encode(ev.Data, ev.Metadata)
}

// Rows checks that query returns the rows want, in order, and reports
// expected and actual rows side by side when it does not. In query,
// {{schema}} stands for the scenario's schema. Values compare by their
// text: an int matches a bigint column, a uuid.UUID or its string a uuid
// column, a time.Time is compared in UTC; NULL is nil.
func (r *Result) Rows(query string, want ...[]any) {
	r.t.Helper()
	sql := strings.ReplaceAll(query, "{{schema}}", pgx.Identifier{r.schema}.Sanitize())
	rows, err := r.pool.Query(r.t.Context(), sql)
	if err != nil {
		r.t.Errorf("pgsinktest: %s: %v", query, err)
		return
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]string, error) {
		vals, err := row.Values()
		if err != nil {
			return nil, err
		}
		return formatRow(vals), nil
	})
	if err != nil {
		r.t.Errorf("pgsinktest: %s: %v", query, err)
		return
	}
	exp := make([][]string, len(want))
	for i, w := range want {
		exp[i] = formatRow(w)
	}
	if diff := diffRows(exp, got); diff != "" {
		r.t.Errorf("pgsinktest: rows of %s differ:\n%s", query, diff)
	}
}

func formatRow(vals []any) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = format(v)
	}
	return out
}

func format(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return fmt.Sprintf("%q", x)
	case []byte:
		return fmt.Sprintf("%q", x)
	case [16]byte:
		return fmt.Sprintf("%q", uuid.UUID(x).String())
	case uuid.UUID:
		return fmt.Sprintf("%q", x.String())
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprintf("%v (%v)", x, err)
		}
		switch d := dv.(type) {
		case string:
			return d // numeric, for one, is text that must match a number
		case driver.Valuer:
			return fmt.Sprint(d)
		}
		return format(dv)
	}
	return fmt.Sprint(v)
}

// diffRows returns "" when want and got are equal, and otherwise both, row
// by row, with differing rows marked.
func diffRows(want, got [][]string) string {
	equal := len(want) == len(got)
	n := max(len(want), len(got))
	lines := make([][2]string, n)
	width := len("expected")
	for i := range n {
		w, g := "(none)", "(none)"
		if i < len(want) {
			w = "(" + strings.Join(want[i], ", ") + ")"
		}
		if i < len(got) {
			g = "(" + strings.Join(got[i], ", ") + ")"
		}
		if w != g {
			equal = false
		}
		lines[i] = [2]string{w, g}
		width = max(width, len(w))
	}
	if equal {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "      %-*s  %s\n", width, "expected", "actual")
	for i, l := range lines {
		mark := " "
		if l[0] != l[1] {
			mark = "!"
		}
		fmt.Fprintf(&b, "%s %3d  %-*s  %s\n", mark, i+1, width, l[0], l[1])
	}
	return b.String()
}
