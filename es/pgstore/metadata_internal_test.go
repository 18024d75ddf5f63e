package pgstore

import (
	"encoding/json"
	"maps"
	"testing"

	"github.com/stratadev/strata/es"
)

func TestMetadataRoundTrip(t *testing.T) {
	for _, md := range []es.Metadata{
		nil,
		{"k": "v"},
		{"correlation_id": "0b7e4c1e", "causation_id": "5d2f3e4a", "": ""},
		{"quote\"back\\slash": "tab\tnew\nline\rret", "ctl": "\x01\x1f\x7f", "html": "<a&b>"},
		{"unicode": "héllo, 世界, 😀", "sep": "\u2028\u2029"},
	} {
		b, err := encodeMetadata(md)
		if err != nil {
			t.Fatal(err)
		}
		var viaJSON es.Metadata
		if err := json.Unmarshal(b, &viaJSON); err != nil {
			t.Fatalf("encodeMetadata(%q) = %s, not JSON: %v", md, b, err)
		}
		if len(md) > 0 && !maps.Equal(viaJSON, md) {
			t.Errorf("encodeMetadata(%q) = %s, reads back as %q", md, b, viaJSON)
		}
		got, err := decodeMetadata(b, nil)
		if err != nil || !maps.Equal(got, md) {
			t.Errorf("decodeMetadata(%s) = %q, %v; want %q", b, got, err, md)
		}
	}
}

func TestDecodeMetadata(t *testing.T) {
	for _, in := range []string{
		`{"a": "1", "b": "x\"y"}`, // as PostgreSQL prints jsonb
		`{"a":"\u00e9\ud83d\ude00"}`,
		` { "a" : "b" } `,
		`{"a": "1", "a": "2"}`,
		`{}`, ` {} `,
	} {
		var want es.Metadata
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeMetadata([]byte(in), interner{})
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("decodeMetadata(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`{"a": 1}`, `[]`, `{"a": "b"`, `{"a" "b"}`, `"x"`} {
		if _, err := decodeMetadata([]byte(in), interner{}); err == nil {
			t.Errorf("decodeMetadata(%s) succeeded; want an error", in)
		}
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	f.Add(`{"a": "b"}`)
	f.Add(`{"a\n": "\u0041\\"}`)
	f.Fuzz(func(t *testing.T, in string) {
		if in == "" {
			return // the column is never empty; decodeMetadata reads it as nil
		}
		var want es.Metadata
		wantErr := json.Unmarshal([]byte(in), &want)
		got, err := decodeMetadata([]byte(in), interner{})
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decodeMetadata(%q) error %v; encoding/json says %v", in, err, wantErr)
		}
		if err == nil && len(want) > 0 && !maps.Equal(got, want) {
			t.Fatalf("decodeMetadata(%q) = %q; encoding/json says %q", in, got, want)
		}
	})
}
