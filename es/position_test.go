package es_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

func TestPositionOrder(t *testing.T) {
	t.Parallel()
	ordered := []es.Position{
		es.Start,
		{Commit: 0, Prepare: 1},
		{Commit: 1, Prepare: 0},
		{Commit: 1, Prepare: 7},
		{Commit: 2, Prepare: 3},
		{Commit: 1 << 63, Prepare: 0},
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", ordered[i], ordered[j], got, want)
			}
			if got := ordered[i].Before(ordered[j]); got != (i < j) {
				t.Errorf("%v.Before(%v) = %v, want %v", ordered[i], ordered[j], got, i < j)
			}
		}
	}
	if !es.Start.IsZero() || (es.Position{Prepare: 1}).IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestPositionText(t *testing.T) {
	t.Parallel()
	for _, p := range []es.Position{es.Start, {Commit: 42, Prepare: 7}, {Commit: ^uint64(0), Prepare: ^uint64(0)}} {
		s := p.String()
		q, err := es.ParsePosition(s)
		if err != nil || q != p {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v", s, q, err, p)
		}
		b, err := json.Marshal(struct{ P es.Position }{p})
		if err != nil {
			t.Fatal(err)
		}
		var back struct{ P es.Position }
		if err := json.Unmarshal(b, &back); err != nil || back.P != p {
			t.Errorf("JSON round trip of %v via %s = %v, %v", p, b, back.P, err)
		}
	}
	if got := (es.Position{Commit: 12, Prepare: 34}).String(); got != "12:34" {
		t.Errorf("String() = %q, want 12:34", got)
	}
	for _, bad := range []string{"", "12", "12:", ":3", "a:1", "1:b", "-1:2", "1:2:3"} {
		if _, err := es.ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) succeeded, want an error", bad)
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	cases := []struct {
		e       es.ExpectedVersion
		name    string
		allowed []int64
		refused []int64
	}{
		{es.Any, "any", []int64{0, 1, 9}, nil},
		{es.ExpectedVersion{}, "any", []int64{0, 3}, nil},
		{es.NoStream, "no stream", []int64{0}, []int64{1, 2}},
		{es.Exact(0), "no stream", []int64{0}, []int64{1}},
		{es.StreamExists, "stream exists", []int64{1, 5}, []int64{0}},
		{es.Exact(3), "3", []int64{3}, []int64{0, 2, 4}},
	}
	for _, c := range cases {
		if got := c.e.String(); got != c.name {
			t.Errorf("String() = %q, want %q", got, c.name)
		}
		for _, v := range c.allowed {
			if !c.e.Allows(v) {
				t.Errorf("%s should allow version %d", c.name, v)
			}
		}
		for _, v := range c.refused {
			if c.e.Allows(v) {
				t.Errorf("%s should refuse version %d", c.name, v)
			}
		}
	}
	if v, ok := es.Exact(5).Version(); !ok || v != 5 {
		t.Errorf("Exact(5).Version() = %d, %v", v, ok)
	}
	if _, ok := es.Any.Version(); ok {
		t.Error("Any.Version() reported an exact version")
	}
}

func TestValidateAppend(t *testing.T) {
	t.Parallel()
	ok := es.EventData{Type: "Thing", Data: []byte(`{}`)}
	long := make([]byte, es.MaxStreamLength+1)
	for i := range long {
		long[i] = 'x'
	}
	cases := []struct {
		name   string
		stream string
		events []es.EventData
		index  int
		reason string
	}{
		{"empty stream", "", []es.EventData{ok}, -1, "stream id is empty"},
		{"long stream", string(long), []es.EventData{ok}, -1, "the limit is 1024"},
		{"bad utf8 stream", "a\xffb", []es.EventData{ok}, -1, "UTF-8"},
		{"no events", "s", nil, -1, "no events"},
		{"empty type", "s", []es.EventData{ok, {Data: []byte(`{}`)}}, 1, "event type is empty"},
		{"empty data", "s", []es.EventData{{Type: "T"}}, 0, "data is empty"},
		{"invalid json", "s", []es.EventData{ok, ok, {Type: "T", Data: []byte(`{"a":`)}}, 2, "not valid JSON"},
		{"nul in stream", "a\x00b", []es.EventData{ok}, -1, "NUL"},
		{"nul in type", "s", []es.EventData{{Type: "T\x00", Data: []byte(`{}`)}}, 0, "NUL"},
		{"escaped nul in data", "s", []es.EventData{ok, {Type: "T", Data: []byte(`{"a":"x\u0000"}`)}}, 1, `\u0000`},
		{"escaped nul after escaped backslashes", "s", []es.EventData{{Type: "T", Data: []byte(`["\\\u0000"]`)}}, 0, `\u0000`},
		{"lone high surrogate", "s", []es.EventData{{Type: "T", Data: []byte(`["\ud800"]`)}}, 0, "surrogate"},
		{"lone low surrogate", "s", []es.EventData{{Type: "T", Data: []byte(`"\uDC00x"`)}}, 0, "surrogate"},
		{"nul in metadata", "s", []es.EventData{{Type: "T", Data: []byte(`1`), Metadata: es.Metadata{"k": "a\x00"}}}, 0, "metadata key"},
		{"bad utf8 metadata", "s", []es.EventData{{Type: "T", Data: []byte(`1`), Metadata: es.Metadata{"k": "\xff"}}}, 0, "metadata"},
	}
	for _, c := range cases {
		err := es.ValidateAppend(c.stream, c.events)
		var inv *es.InvalidEventError
		if !errors.As(err, &inv) || !errors.Is(err, es.ErrInvalidEvent) {
			t.Errorf("%s: got %v, want *InvalidEventError", c.name, err)
			continue
		}
		if inv.Index != c.index || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: got index %d and %q; want index %d and a message containing %q", c.name, inv.Index, err, c.index, c.reason)
		}
	}
	id := uuid.New()
	dup := []es.EventData{{ID: id, Type: "A", Data: []byte(`1`)}, {ID: uuid.New(), Type: "B", Data: []byte(`2`)}, {ID: id, Type: "C", Data: []byte(`3`)}}
	var inv *es.InvalidEventError
	if err := es.ValidateAppend("s", dup); !errors.As(err, &inv) || inv.Index != 2 || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate id in one append: got %v, want an InvalidEventError at index 2", err)
	}
	// A surrogate pair is a character, not a problem.
	if err := es.ValidateAppend("s", []es.EventData{{Type: "T", Data: []byte(`"\ud83d\ude00"`)}}); err != nil {
		t.Errorf("a surrogate pair was refused: %v", err)
	}
	// An escaped backslash followed by the text u0000 is not a NUL.
	if err := es.ValidateAppend("s", []es.EventData{{Type: "T", Data: []byte(`"\\u0000"`)}}); err != nil {
		t.Errorf(`"\\u0000" is an escaped backslash, not a NUL: %v`, err)
	}
	if err := es.ValidateAppend("s", []es.EventData{ok, ok}); err != nil {
		t.Errorf("two valid events without IDs: %v", err)
	}
}
