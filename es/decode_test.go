package es_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
)

// Types that exercise what strict decoding has to know about a struct:
// nesting through pointers, slices, arrays and maps, embedding, tags,
// fields that decode themselves, and names encoding/json folds.
type strictLine struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type strictBase struct {
	Tenant string `json:"tenant"`
	Note   string
}

type strictEvent struct {
	strictBase
	ID        string                `json:"id"`
	Lines     []strictLine          `json:"lines"`
	First     *strictLine           `json:"first"`
	Pair      [1]strictLine         `json:"pair"`
	ByKey     map[string]strictLine `json:"by_key"`
	Free      map[string]any        `json:"free"`
	Any       any                   `json:"any"`
	Raw       json.RawMessage       `json:"raw"`
	At        time.Time             `json:"at"`
	Count     int64                 `json:"count,string"`
	Skipped   string                `json:"-"`
	Untagged  int
	unexposed int
}

// Two fields whose names fold to the same key.
type strictFolds struct {
	Name  string `json:"name"`
	Other string `json:"NAME"`
}

// A name that is not ASCII; encoding/json folds the Kelvin sign to "k".
type strictKelvin struct {
	Kelvin int `json:"\u212a"`
}

// A recursive type.
type strictTree struct {
	Label    string       `json:"label"`
	Children []strictTree `json:"children"`
}

func newStrictRegistry() *es.Registry {
	r := es.NewRegistry()
	es.Register[strictEvent](r, "Event")
	es.Register[strictFolds](r, "Folds")
	es.Register[strictKelvin](r, "Kelvin")
	es.Register[strictTree](r, "Tree")
	es.Register[strictLine](r, "Line")
	return r
}

func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	r := newStrictRegistry()
	cases := []struct {
		name, typ, data string
		ok              bool
	}{
		{"known fields", "Line", `{"sku":"a","qty":2}`, true},
		{"white space around", "Line", " \n{\"sku\" : \"a\" }\t ", true},
		{"unknown field", "Line", `{"sku":"a","qty":2,"price":3}`, false},
		{"unknown field only", "Line", `{"price":3}`, false},
		{"case-insensitive match", "Line", `{"SKU":"a","Qty":2}`, true},
		{"escaped known key", "Line", `{"\u0073ku":"a"}`, true},
		{"escaped unknown key", "Line", `{"\u0073kux":"a"}`, false},
		{"trailing value", "Line", `{"sku":"a"} {"sku":"b"}`, false},
		{"trailing bracket", "Line", `{"sku":"a"}]`, false},
		{"trailing brace", "Line", `{"sku":"a"}}`, false},
		{"trailing garbage", "Line", `{"sku":"a"}x`, false},
		{"truncated", "Line", `{"sku":"a"`, false},
		{"empty", "Line", ``, false},
		{"null", "Line", `null`, true},
		{"wrong type", "Line", `{"sku":1}`, false},
		{"nested in slice", "Event", `{"lines":[{"sku":"a"},{"SKU":"b","qty":1}]}`, true},
		{"unknown nested in slice", "Event", `{"lines":[{"sku":"a"},{"sku":"b","price":1}]}`, false},
		{"unknown nested in pointer", "Event", `{"first":{"sku":"a","price":1}}`, false},
		{"unknown nested in array", "Event", `{"pair":[{"sku":"a","price":1}]}`, false},
		{"array element beyond the length", "Event", `{"pair":[{"sku":"a"},{"price":1}]}`, true},
		{"unknown nested in map value", "Event", `{"by_key":{"x":{"sku":"a","price":1}}}`, false},
		{"any keys in a map", "Event", `{"by_key":{"anything":{"sku":"a"}}}`, true},
		{"any keys in map[string]any", "Event", `{"free":{"a":{"b":[{"c":1}]}}}`, true},
		{"any keys in an interface", "Event", `{"any":{"a":{"b":1}}}`, true},
		{"any keys in a RawMessage", "Event", `{"raw":{"a":{"b":1}}}`, true},
		{"time", "Event", `{"at":"2026-11-29T07:00:00Z"}`, true},
		{"string option", "Event", `{"count":"12"}`, true},
		{"promoted field", "Event", `{"tenant":"t","Note":"n","note":"m"}`, true},
		{"tag minus", "Event", `{"Skipped":"x"}`, false},
		{"unexported", "Event", `{"unexposed":1}`, false},
		{"untagged by Go name", "Event", `{"untagged":1,"Untagged":2}`, true},
		{"folded names, exact", "Folds", `{"name":"a","NAME":"b"}`, true},
		{"folded names, folded", "Folds", `{"Name":"a"}`, true},
		{"folded names, unknown", "Folds", `{"names":"a"}`, false},
		{"trailing bracket, folded names", "Folds", `{"name":"a"} ]`, false},
		{"trailing value, folded names", "Folds", `{"name":"a"} {}`, false},
		{"kelvin exact", "Kelvin", `{"\u212a":1}`, true},
		{"kelvin folded", "Kelvin", `{"k":1}`, true},
		{"kelvin unknown", "Kelvin", `{"j":1}`, false},
		{"recursive", "Tree", `{"label":"a","children":[{"label":"b","children":[{"label":"c"}]}]}`, true},
		{"recursive unknown", "Tree", `{"label":"a","children":[{"label":"b","children":[{"label":"c","x":1}]}]}`, false},
	}
	for _, c := range cases {
		_, err := r.Decode(es.Record{Stream: "s", Version: 3, Type: c.typ, Data: []byte(c.data)})
		if c.ok && err != nil {
			t.Errorf("%s: Decode(%s %s) = %v, want no error", c.name, c.typ, c.data, err)
		}
		var de *es.DecodeError
		if !c.ok && (!errors.As(err, &de) || de.Type != c.typ || de.Version != 3) {
			t.Errorf("%s: Decode(%s %s) = %v, want a DecodeError for s@3", c.name, c.typ, c.data, err)
		}
		// What was accepted before stays accepted, and the reverse; only
		// data after a closing bracket is now rejected too.
		if old := oldDecode(r, c.typ, []byte(c.data)); (old == nil) != c.ok && !strings.HasPrefix(c.name, "trailing") {
			t.Errorf("%s: the json.Decoder gave %v, but the case says ok=%v", c.name, old, c.ok)
		}
	}
}

func TestDecodeStrictValues(t *testing.T) {
	t.Parallel()
	r := newStrictRegistry()
	data := `{"tenant":"t","id":"e-1","LINES":[{"sku":"a","qty":1}],"first":{"sku":"f"},"by_key":{"k":{"qty":3}},"count":"7","Untagged":5}`
	got, err := r.Decode(es.Record{Stream: "s", Version: 1, Type: "Event", Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	want := strictEvent{
		strictBase: strictBase{Tenant: "t"}, ID: "e-1", Lines: []strictLine{{SKU: "a", Qty: 1}},
		First: &strictLine{SKU: "f"}, ByKey: map[string]strictLine{"k": {Qty: 3}}, Count: 7, Untagged: 5, unexposed: 0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(%s):\n got %#v\nwant %#v", data, got, want)
	}
}

// oldDecode is how Decode decoded before it learnt to check keys itself:
// a json.Decoder that disallows unknown fields, and no second value.
func oldDecode(r *es.Registry, typ string, data []byte) error {
	v := reflect.New(registeredType(r, typ))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one value")
	}
	return nil
}

func registeredType(r *es.Registry, typ string) reflect.Type {
	switch typ {
	case "Event":
		return reflect.TypeFor[strictEvent]()
	case "Folds":
		return reflect.TypeFor[strictFolds]()
	case "Kelvin":
		return reflect.TypeFor[strictKelvin]()
	case "Tree":
		return reflect.TypeFor[strictTree]()
	}
	return reflect.TypeFor[strictLine]()
}

// FuzzDecodeStrict compares Decode with a json.Decoder that disallows
// unknown fields: the same events are accepted, with the same values,
// except that Decode also rejects anything after the first value.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"sku":"a","qty":2}`, `{"SKU":"a"}`, `{"sku":"a","x":1}`, `{"sku":"a"}]`,
		`{"tenant":"t","Note":"n","lines":[{"sku":"a"}],"first":{"sku":"b"},"pair":[{"qty":1},{"z":2}]}`,
		`{"by_key":{"x":{"sku":"a"}},"free":{"a":[{"b":1}]},"any":{"c":2},"raw":{"d":3},"count":"4"}`,
		`{"name":"a","NAME":"b","Name":"c"}`, `{"\u212a":1,"k":2,"K":3}`, `{"label":"a","children":[{"label":"b","x":1}]}`,
		`{"\u0073ku":"a"}`, `{"s\"ku":"a"}`, `null`, `[]`, `{}`, ` {} `, `{"untagged":1}`,
	} {
		for _, typ := range []string{"Line", "Event", "Folds", "Kelvin", "Tree"} {
			f.Add(typ, []byte(s))
		}
	}
	r := newStrictRegistry()
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		switch typ {
		case "Line", "Event", "Folds", "Kelvin", "Tree":
		default:
			return
		}
		got, err := r.Decode(es.Record{Stream: "s", Version: 1, Type: typ, Data: data})
		wantOK := oldDecode(r, typ, data) == nil && json.Valid(data)
		if (err == nil) != wantOK {
			t.Fatalf("Decode(%s %q) = %v; the json.Decoder accepts it: %v", typ, data, err, wantOK)
		}
		if err != nil {
			return
		}
		want := reflect.New(registeredType(r, typ))
		if err := json.Unmarshal(data, want.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want.Elem().Interface()) {
			t.Fatalf("Decode(%s %q) = %#v, want %#v", typ, data, got, want.Elem().Interface())
		}
	})
}
