package es_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stratadev/strata/es"
)

type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type itemRemoved struct {
	SKU string `json:"sku"`
}

func newTestRegistry() *es.Registry {
	r := es.NewRegistry()
	es.Register[itemAdded](r, "ItemAdded")
	es.Register[itemRemoved](r, "ItemRemoved")
	return r
}

func TestRegistryRoundTrip(t *testing.T) {
	t.Parallel()
	r := newTestRegistry()
	for _, ev := range []any{itemAdded{SKU: "a", Quantity: 2}, &itemAdded{SKU: "b", Quantity: 1}, itemRemoved{SKU: "a"}} {
		data, err := r.Encode(ev, es.Metadata{"k": "v"})
		if err != nil {
			t.Fatalf("Encode(%#v): %v", ev, err)
		}
		got, err := r.Decode(es.Record{Stream: "s", Version: 1, Type: data.Type, Data: data.Data})
		if err != nil {
			t.Fatalf("Decode(%s %s): %v", data.Type, data.Data, err)
		}
		want := ev
		if p, ok := ev.(*itemAdded); ok {
			want = *p
		}
		if got != want {
			t.Errorf("round trip of %#v gave %#v", want, got)
		}
		if data.Metadata["k"] != "v" {
			t.Errorf("metadata not carried: %v", data.Metadata)
		}
	}
}

func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	r := newTestRegistry()

	if _, err := r.Encode(struct{ X int }{1}, nil); !errors.Is(err, es.ErrUnknownEventType) {
		t.Errorf("Encode of an unregistered type: got %v, want ErrUnknownEventType", err)
	}
	if _, err := r.Encode(nil, nil); !errors.Is(err, es.ErrUnknownEventType) {
		t.Errorf("Encode(nil): got %v, want ErrUnknownEventType", err)
	}

	_, err := r.Decode(es.Record{Stream: "order-1", Version: 4, Type: "Nope", Data: []byte(`{}`)})
	var unknown *es.UnknownEventTypeError
	if !errors.As(err, &unknown) || unknown.Stream != "order-1" || unknown.Version != 4 || unknown.Type != "Nope" {
		t.Errorf("Decode of an unknown type: got %v, want UnknownEventTypeError naming order-1@4 and Nope", err)
	}

	bad := []struct{ data, why string }{
		{`{"sku": 5}`, "wrong field type"},
		{`{"sku": "a", "qty": 1}`, "unknown field"},
		{`{"sku": "a"} {"sku": "b"}`, "two values"},
		{`{"sku": `, "truncated"},
	}
	for _, b := range bad {
		_, err := r.Decode(es.Record{Stream: "order-1", Version: 9, Type: "ItemAdded", Data: []byte(b.data)})
		var dec *es.DecodeError
		if !errors.As(err, &dec) || !errors.Is(err, es.ErrDecode) || dec.Version != 9 || !strings.Contains(err.Error(), "order-1@9") {
			t.Errorf("Decode with %s (%s): got %v, want a DecodeError naming order-1@9", b.why, b.data, err)
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	t.Parallel()
	cases := map[string]func(r *es.Registry){
		"duplicate name":   func(r *es.Registry) { es.Register[itemRemoved](r, "ItemAdded") },
		"duplicate type":   func(r *es.Registry) { es.Register[itemAdded](r, "Other") },
		"pointer type":     func(r *es.Registry) { es.Register[*itemAdded](r, "Ptr") },
		"empty name":       func(r *es.Registry) { es.Register[struct{ A int }](r, "") },
		"upcast a current": func(r *es.Registry) { r.Upcast("ItemAdded", nil) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f(newTestRegistry())
		}()
	}
}

func TestUpcasterChain(t *testing.T) {
	t.Parallel()
	r := newTestRegistry()
	// v1 had "item" and no quantity; v2 renamed "item" to "sku"; v3 is ItemAdded.
	r.Upcast("ItemAdded.v1", func(data json.RawMessage) (string, json.RawMessage, error) {
		var v1 struct{ Item string }
		if err := json.Unmarshal(data, &v1); err != nil {
			return "", nil, err
		}
		out, err := json.Marshal(map[string]string{"sku": v1.Item})
		return "ItemAdded.v2", out, err
	})
	r.Upcast("ItemAdded.v2", func(data json.RawMessage) (string, json.RawMessage, error) {
		var v2 map[string]any
		if err := json.Unmarshal(data, &v2); err != nil {
			return "", nil, err
		}
		v2["quantity"] = 1
		out, err := json.Marshal(v2)
		return "ItemAdded", out, err
	})
	got, err := r.Decode(es.Record{Stream: "s", Version: 1, Type: "ItemAdded.v1", Data: []byte(`{"Item":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got != (itemAdded{SKU: "x", Quantity: 1}) {
		t.Errorf("upcast chain gave %#v", got)
	}
	if !r.Known("ItemAdded.v1") || !r.Known("ItemAdded") || r.Known("ItemAdded.v0") {
		t.Error("Known does not reflect registered types and upcasters")
	}

	for _, c := range []struct{ from, want string }{
		{"ItemAdded.v1", "ItemAdded"}, {"ItemAdded.v2", "ItemAdded"}, {"ItemAdded", "ItemAdded"}, {"Unknown", "Unknown"},
	} {
		if got, err := r.Upcasted(es.Record{Type: c.from, Data: []byte(`{"Item":"x"}`)}); got.Type != c.want || err != nil {
			t.Errorf("Upcasted of %s: type %q, %v; want %q, nil", c.from, got.Type, err, c.want)
		}
	}
	if _, err := r.Upcasted(es.Record{Type: "ItemAdded.v1", Data: []byte(`[1]`)}); !errors.Is(err, es.ErrDecode) {
		t.Errorf("Upcasted with a failing upcaster: got %v, want a DecodeError", err)
	}

	_, err = r.Decode(es.Record{Stream: "s", Version: 2, Type: "ItemAdded.v1", Data: []byte(`[1]`)})
	if !errors.Is(err, es.ErrDecode) || !strings.Contains(err.Error(), "upcast") {
		t.Errorf("failing upcaster: got %v, want a DecodeError mentioning upcast", err)
	}

	r.Upcast("Loop", func(data json.RawMessage) (string, json.RawMessage, error) { return "Loop", data, nil })
	if _, err := r.Decode(es.Record{Stream: "s", Version: 3, Type: "Loop", Data: []byte(`{}`)}); !errors.Is(err, es.ErrDecode) || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("upcaster cycle: got %v, want an error naming the cycle", err)
	}
}

type benchLine struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	Cents     int64  `json:"cents"`
}

type benchOrderPlaced struct {
	OrderID  string      `json:"order_id"`
	Customer string      `json:"customer"`
	Currency string      `json:"currency"`
	Lines    []benchLine `json:"lines"`
}

// Decoding one stored event: a small flat one, as projection catch-up
// benchmarks use, and a 244-byte order with nested lines, as the store's
// benchmarks use.
func BenchmarkDecode(b *testing.B) {
	r := newTestRegistry()
	es.Register[benchOrderPlaced](r, "OrderPlaced")
	order, err := json.Marshal(benchOrderPlaced{
		OrderID: "order-1", Customer: "customer-1234", Currency: "EUR",
		Lines: []benchLine{
			{ProductID: "product-17", Name: "Espresso machine", Quantity: 1, Cents: 34900},
			{ProductID: "product-42", Name: "Coffee beans, 1 kg", Quantity: 3, Cents: 1899},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		rec  es.Record
	}{
		{"small", es.Record{Stream: "s", Version: 1, Type: "ItemAdded", Data: []byte(`{"sku":"sku-1234","quantity":17}`)}},
		{"order", es.Record{Stream: "s", Version: 1, Type: "OrderPlaced", Data: order}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.rec.Data)))
			for b.Loop() {
				if _, err := r.Decode(c.rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
