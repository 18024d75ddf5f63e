package pgsink_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections/pgsink"
)

// upsert runs one Upsert in its own transaction.
func (e env) upsert(t *testing.T, u func(tx *pgsink.Tx) pgsink.Upsert, values ...any) error {
	t.Helper()
	return e.sink.BeginFunc(t.Context(), func(ctx context.Context, tx *pgsink.Tx) error {
		_, err := tx.Upsert(ctx, u(tx), values...)
		return err
	})
}

func TestUpsertInfersTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.every (
		k text PRIMARY KEY, i8 bigint, i int, i4 integer, i2 smallint, b boolean, f8 double precision, f4 real,
		at timestamptz, raw bytea, doc jsonb, id uuid, opt text)`)
	at := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	id := uuid.New()
	name := "set"
	err := e.upsert(t, func(tx *pgsink.Tx) pgsink.Upsert {
		return pgsink.Upsert{Table: tx.Table("every"), Key: []string{"k"},
			Columns: []string{"k", "i8", "i", "i4", "i2", "b", "f8", "f4", "at", "raw", "doc", "id", "opt"}}
	}, []string{"a", "b"}, []int64{1 << 40, 2}, []int{3, 4}, []int32{5, 6}, []int16{7, 8}, []bool{true, false},
		[]float64{1.5, 2.5}, []float32{0.25, 0.5}, []time.Time{at, at.Add(time.Hour)}, [][]byte{{1, 2}, nil},
		[]json.RawMessage{json.RawMessage(`{"x":1}`), json.RawMessage(`[]`)}, []uuid.UUID{id, id}, []*string{&name, nil})
	if err != nil {
		t.Fatalf("Upsert without Types: %v", err)
	}
	type row struct {
		K   string
		I8  int64
		I   int
		I4  int32
		I2  int16
		B   bool
		F8  float64
		F4  float32
		At  time.Time
		Raw []byte
		Doc string
		ID  uuid.UUID
		Opt *string
	}
	rows, err := e.pool.Query(t.Context(), replaceSchema(`SELECT k, i8, i, i4, i2, b, f8, f4, at, raw, doc::text, id, opt FROM {{schema}}.every ORDER BY k`, e.sink.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"a", 1 << 40, 3, 5, 7, true, 1.5, 0.25, at, []byte{1, 2}, `{"x": 1}`, id, &name},
		{"b", 2, 4, 6, 8, false, 2.5, 0.5, at.Add(time.Hour), nil, `[]`, id, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.K != w.K || g.I8 != w.I8 || g.I != w.I || g.I4 != w.I4 || g.I2 != w.I2 || g.B != w.B || g.F8 != w.F8 || g.F4 != w.F4 ||
			!g.At.Equal(w.At) || !slices.Equal(g.Raw, w.Raw) || g.Doc != w.Doc || g.ID != w.ID || (g.Opt == nil) != (w.Opt == nil) ||
			(g.Opt != nil && *g.Opt != *w.Opt) {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestUpsertExplicitTypesWin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.prices (sku text PRIMARY KEY, price numeric NOT NULL)`)
	u := func(types []string) func(tx *pgsink.Tx) pgsink.Upsert {
		return func(tx *pgsink.Tx) pgsink.Upsert {
			return pgsink.Upsert{Table: tx.Table("prices"), Columns: []string{"sku", "price"}, Types: types, Key: []string{"sku"}}
		}
	}
	// Inferred, the prices would be text, which a numeric column refuses.
	if err := e.upsert(t, u(nil), []string{"tea"}, []string{"12.50"}); err == nil {
		t.Fatal("text values into a numeric column without Types succeeded")
	}
	if err := e.upsert(t, u([]string{"", "numeric"}), []string{"tea"}, []string{"12.50"}); err != nil {
		t.Fatalf("Upsert with Types naming numeric: %v", err)
	}
	var price string
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT price::text FROM {{schema}}.prices`, e.sink.Schema())).Scan(&price); err != nil || price != "12.50" {
		t.Errorf("price = %q, %v; want 12.50", price, err)
	}
}

func TestUpsertCannotInfer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.attrs (k text PRIMARY KEY, attrs jsonb)`)
	err := e.upsert(t, func(tx *pgsink.Tx) pgsink.Upsert {
		return pgsink.Upsert{Table: tx.Table("attrs"), Columns: []string{"k", "attrs"}, Key: []string{"k"}}
	}, []string{"a"}, []map[string]int{{"x": 1}})
	if err == nil || !strings.Contains(err.Error(), "column attrs") || !strings.Contains(err.Error(), "Types") {
		t.Fatalf("Upsert of []map[string]int without Types = %v; want an error naming column attrs and Types", err)
	}
	err = e.upsert(t, func(tx *pgsink.Tx) pgsink.Upsert {
		return pgsink.Upsert{Table: tx.Table("attrs"), Columns: []string{"k", "attrs"}, Key: []string{"k"}, Add: []string{"attrs"}}
	}, []string{"a"}, []json.RawMessage{json.RawMessage(`{}`)})
	if err == nil || !strings.Contains(err.Error(), "column attrs in Add") {
		t.Fatalf("Add on a jsonb column = %v; want an error naming column attrs in Add", err)
	}
}

// counts reads the counters table as sku → "n name".
func (e env) counters(t *testing.T) map[string]string {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), replaceSchema(`SELECT sku, n::text || ' ' || name FROM {{schema}}.counters`, e.sink.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var k, v string
	if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error { got[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestUpsertAddAndFold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.counters (sku text PRIMARY KEY, n bigint NOT NULL, name text NOT NULL)`)
	u := func(add []string) func(tx *pgsink.Tx) pgsink.Upsert {
		return func(tx *pgsink.Tx) pgsink.Upsert {
			return pgsink.Upsert{Table: tx.Table("counters"), Columns: []string{"sku", "n", "name"}, Key: []string{"sku"}, Add: add}
		}
	}
	if err := e.upsert(t, u([]string{"n"}), []string{"tea"}, []int64{10}, []string{"Tea"}); err != nil {
		t.Fatal(err)
	}
	// tea exists: its n is added to; cup is repeated in the batch: its n
	// values are summed, the last name wins.
	if err := e.upsert(t, u([]string{"n"}), []string{"cup", "tea", "cup", "cup"}, []int64{1, 5, 2, 4}, []string{"Cup", "Green Tea", "Mug", "Blue Mug"}); err != nil {
		t.Fatalf("Upsert with a repeated key and Add: %v", err)
	}
	want := map[string]string{"tea": "15 Green Tea", "cup": "7 Blue Mug"}
	if got := e.counters(t); !maps.Equal(got, want) {
		t.Errorf("after Add: %v, want %v", got, want)
	}
	// Without Add, a repeated key's last row wins outright.
	if err := e.upsert(t, u(nil), []string{"tea", "tea"}, []int64{1, 2}, []string{"Black Tea", "White Tea"}); err != nil {
		t.Fatalf("Upsert with a repeated key: %v", err)
	}
	want = map[string]string{"tea": "2 White Tea", "cup": "7 Blue Mug"}
	if got := e.counters(t); !maps.Equal(got, want) {
		t.Errorf("after overwrite: %v, want %v", got, want)
	}
}

// TestUpsertFoldsCompositeKeys: rows fold when every key column matches,
// times compared as instants whatever their zone.
func TestUpsertFoldsCompositeKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec(t, `CREATE TABLE {{schema}}.daily (sku text, day timestamptz, n integer NOT NULL, PRIMARY KEY (sku, day))`)
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sameDay := day.In(time.FixedZone("CET", 3600))
	err := e.upsert(t, func(tx *pgsink.Tx) pgsink.Upsert {
		return pgsink.Upsert{Table: tx.Table("daily"), Columns: []string{"sku", "day", "n"}, Key: []string{"sku", "day"}, Add: []string{"n"}}
	}, []string{"tea", "tea", "cup", "tea"}, []time.Time{day, sameDay, day, day.AddDate(0, 0, 1)}, []int32{1, 2, 4, 8})
	if err != nil {
		t.Fatalf("Upsert with a repeated composite key: %v", err)
	}
	var got string
	if err := e.pool.QueryRow(t.Context(), replaceSchema(`SELECT string_agg(sku || ' ' || to_char(day AT TIME ZONE 'UTC', 'MM-DD') || ' ' || n, ', ' ORDER BY sku, day) FROM {{schema}}.daily`, e.sink.Schema())).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "cup 03-01 4, tea 03-01 3, tea 03-02 8"; got != want {
		t.Errorf("rows %q, want %q", got, want)
	}
}
