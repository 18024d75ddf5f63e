package pgsink

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Upsert describes a batch insert-or-update for [Tx.Upsert].
type Upsert struct {
	// Table is the target, usually from [Tx.Table].
	Table pgx.Identifier
	// Columns are the columns written, in the order of the values.
	Columns []string
	// Types are the columns' SQL types ("text", "bigint", "jsonb", ...), in
	// the order of Columns. Defaults to the types inferred from the Go
	// types of the values (see [Tx.Upsert]); an empty entry is inferred
	// too.
	Types []string
	// Key is the conflict target: the columns of a unique index.
	Key []string
	// Update lists the columns set when a row exists. Defaults to every
	// column that is not in Key; with no such column, existing rows are
	// left as they are.
	Update []string
	// Add lists columns that, when a row exists, are added to instead of
	// overwritten (col = col + excluded.col): counters and sums. They are
	// numbers, not in Key, and updated whatever Update says. Defaults to
	// none.
	Add []string
}

// Upsert inserts or updates many rows in one statement: values holds one
// slice per column (a []string for a text column, an []int64 for a bigint,
// ...), all of the same length. Rows are sent as arrays and expanded with
// unnest, which is several times faster than a statement per row.
//
// Without Types, the SQL type of each column is inferred from its slice:
// []string text, []int64 and []int bigint, []int32 integer, []int16
// smallint, []bool boolean, []float64 double precision, []float32 real,
// []time.Time timestamptz, [][]byte bytea, []json.RawMessage jsonb,
// []uuid.UUID uuid, and a slice of pointers to these (NULL for nil) the
// same. Any other slice is an error that names the column: give its type
// in Types.
//
// Rows whose keys repeat within one call are folded into one before they
// are sent (PostgreSQL refuses to update a row twice in one statement):
// the last row's values win, except in Add columns, whose values are
// summed. Keys are compared as Go values, times as instants.
func (tx *Tx) Upsert(ctx context.Context, u Upsert, values ...any) (int64, error) {
	q, values, err := u.build(values)
	if err != nil {
		return 0, fmt.Errorf("pgsink: upsert into %s: %w", u.Table.Sanitize(), err)
	}
	tag, err := tx.Exec(ctx, q, values...)
	if err != nil {
		return 0, fmt.Errorf("pgsink: upsert into %s: %w", u.Table.Sanitize(), err)
	}
	return tag.RowsAffected(), nil
}

// build checks u and values, infers the types, folds repeated keys and
// returns the statement and its arguments.
func (u Upsert) build(values []any) (string, []any, error) {
	if len(u.Columns) == 0 || len(values) != len(u.Columns) || len(u.Key) == 0 ||
		(u.Types != nil && len(u.Types) != len(u.Columns)) {
		return "", nil, fmt.Errorf("want Columns and values (and Types, if set) of the same length, and a Key")
	}
	cols := make([]reflect.Value, len(values))
	n := -1
	for i, v := range values {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			return "", nil, fmt.Errorf("column %s: values are a %T, want a slice", u.Columns[i], v)
		}
		if n >= 0 && rv.Len() != n {
			return "", nil, fmt.Errorf("column %s has %d values, column %s %d: want as many in every column", u.Columns[i], rv.Len(), u.Columns[0], n)
		}
		n, cols[i] = rv.Len(), rv
	}
	types := make([]string, len(u.Columns))
	for i := range u.Columns {
		if u.Types != nil && u.Types[i] != "" {
			types[i] = u.Types[i]
			continue
		}
		t, ok := sqlType(cols[i].Type().Elem())
		if !ok {
			return "", nil, fmt.Errorf("column %s: cannot infer the SQL type of %s values; give it in Types", u.Columns[i], cols[i].Type().Elem())
		}
		types[i] = t
	}
	keys := make([]int, len(u.Key))
	for k, name := range u.Key {
		if keys[k] = slices.Index(u.Columns, name); keys[k] < 0 {
			return "", nil, fmt.Errorf("key column %s is not in Columns", name)
		}
	}
	adds := make([]bool, len(u.Columns))
	for _, name := range u.Add {
		i := slices.Index(u.Columns, name)
		switch {
		case i < 0:
			return "", nil, fmt.Errorf("column %s in Add is not in Columns", name)
		case slices.Contains(u.Key, name):
			return "", nil, fmt.Errorf("column %s in Add is in Key", name)
		case !isNumber(cols[i].Type().Elem()):
			return "", nil, fmt.Errorf("column %s in Add: values are %s, want numbers", name, cols[i].Type().Elem())
		}
		adds[i] = true
	}
	folded, err := fold(cols, keys, adds, u.Columns)
	if err != nil {
		return "", nil, err
	}
	if folded != nil {
		values = folded
	}

	update := u.Update
	if update == nil {
		for _, c := range u.Columns {
			if !slices.Contains(u.Key, c) {
				update = append(update, c)
			}
		}
	}
	for _, c := range u.Add {
		if !slices.Contains(update, c) {
			update = append(update, c)
		}
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(u.Table.Sanitize())
	b.WriteString(" AS cur (")
	writeIdents(&b, u.Columns)
	b.WriteString(") SELECT * FROM unnest(")
	for i, t := range types {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s[]", i+1, t)
	}
	b.WriteString(") ON CONFLICT (")
	writeIdents(&b, u.Key)
	if len(update) == 0 {
		b.WriteString(") DO NOTHING")
	} else {
		b.WriteString(") DO UPDATE SET ")
		for i, c := range update {
			if i > 0 {
				b.WriteString(", ")
			}
			id := pgx.Identifier{c}.Sanitize()
			if slices.Contains(u.Add, c) {
				b.WriteString(id + " = cur." + id + " + excluded." + id)
			} else {
				b.WriteString(id + " = excluded." + id)
			}
		}
	}
	return b.String(), values, nil
}

// Go types with an SQL type of their own, checked before their kinds.
var (
	timeType    = reflect.TypeFor[time.Time]()
	rawJSONType = reflect.TypeFor[json.RawMessage]()
	uuidType    = reflect.TypeFor[uuid.UUID]()
	bytesType   = reflect.TypeFor[[]byte]()
)

// sqlType returns the SQL type of values of Go type t.
func sqlType(t reflect.Type) (string, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return "timestamptz", true
	case rawJSONType:
		return "jsonb", true
	case uuidType:
		return "uuid", true
	case bytesType:
		return "bytea", true
	}
	if t.PkgPath() != "" {
		// A named type of another kind may encode as anything.
		return "", false
	}
	switch t.Kind() {
	case reflect.String:
		return "text", true
	case reflect.Int64, reflect.Int:
		return "bigint", true
	case reflect.Int32:
		return "integer", true
	case reflect.Int16:
		return "smallint", true
	case reflect.Bool:
		return "boolean", true
	case reflect.Float64:
		return "double precision", true
	case reflect.Float32:
		return "real", true
	}
	return "", false
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// fold merges the rows of cols whose key columns repeat into the first
// row with that key: the last row's values win, those of adds columns are
// summed. It returns nil when no key repeats, so that the common case
// sends the caller's slices as they are.
func fold(cols []reflect.Value, keys []int, adds []bool, names []string) ([]any, error) {
	n := cols[0].Len()
	keyType := reflect.ArrayOf(len(keys), reflect.TypeFor[any]())
	first := make(map[any]int, n) // key → index of the folded row
	rows := make([]int, n)        // row → index of its folded row
	repeated := false
	for r := range n {
		k := reflect.New(keyType).Elem()
		for j, c := range keys {
			v, err := keyValue(cols[c].Index(r))
			if err != nil {
				return nil, fmt.Errorf("key column %s: %w", names[c], err)
			}
			k.Index(j).Set(reflect.ValueOf(&v).Elem())
		}
		key := k.Interface()
		if i, ok := first[key]; ok {
			rows[r], repeated = i, true
			continue
		}
		rows[r] = len(first)
		first[key] = len(first)
	}
	if !repeated {
		return nil, nil
	}
	out := make([]any, len(cols))
	for c, col := range cols {
		f := reflect.MakeSlice(col.Type(), len(first), len(first))
		set := make([]bool, len(first))
		for r := range n {
			i, v := rows[r], col.Index(r)
			if adds[c] && set[i] {
				f.Index(i).Set(add(f.Index(i), v))
			} else {
				f.Index(i).Set(v)
			}
			set[i] = true
		}
		out[c] = f.Interface()
	}
	return out, nil
}

// keyValue returns v as a comparable value that equals another when
// PostgreSQL would find the keys equal.
func keyValue(v reflect.Value) (any, error) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == timeType:
		return v.Interface().(time.Time).UTC().Round(0), nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		return string(v.Bytes()), nil
	case !v.Comparable():
		return nil, fmt.Errorf("%s values cannot be compared to fold repeated keys", v.Type())
	}
	return v.Interface(), nil
}

// add returns a + b, two numbers of the same type.
func add(a, b reflect.Value) reflect.Value {
	s := reflect.New(a.Type()).Elem()
	switch {
	case a.CanInt():
		s.SetInt(a.Int() + b.Int())
	case a.CanUint():
		s.SetUint(a.Uint() + b.Uint())
	default:
		s.SetFloat(a.Float() + b.Float())
	}
	return s
}

func writeIdents(b *strings.Builder, names []string) {
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{n}.Sanitize())
	}
}
