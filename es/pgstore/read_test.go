package pgstore_test

import (
	"maps"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// Events of one append usually carry the same metadata, which a read
// decodes once per run of equal values: every record still gets the right
// metadata, in a map of its own.
func TestReadMetadataRuns(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	a := es.Metadata{es.MetaCorrelationID: "c-1", es.MetaCausationID: "k-1"}
	b := es.Metadata{es.MetaCorrelationID: "c-1", es.MetaCausationID: "k-2"}
	withMeta := func(md es.Metadata) es.EventData {
		e := ev("Noted", `{}`)
		e.Metadata = md
		return e
	}
	want := []es.Metadata{a, a, a, nil, nil, b, b, a}
	evs := make([]es.EventData, len(want))
	for i, md := range want {
		evs[i] = withMeta(md)
	}
	if _, err := s.Append(ctx, "notes-1", es.NoStream, evs[:3]...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "notes-1", es.Exact(3), evs[3:]...); err != nil {
		t.Fatal(err)
	}
	for _, read := range []struct {
		name string
		do   func() ([]es.Record, error)
	}{
		{"ReadAll", func() ([]es.Record, error) { return s.ReadAll(ctx, es.Start, 100) }},
		{"ReadStream", func() ([]es.Record, error) { return s.ReadStream(ctx, "notes-1", es.ReadStreamOptions{}) }},
	} {
		recs, err := read.do()
		if err != nil {
			t.Fatal(read.name, err)
		}
		if len(recs) != len(want) {
			t.Fatalf("%s returned %d records, want %d", read.name, len(recs), len(want))
		}
		for i, r := range recs {
			if !maps.Equal(r.Metadata, want[i]) {
				t.Errorf("%s: record %d has metadata %v, want %v", read.name, i, r.Metadata, want[i])
			}
		}
		// A caller may change one record's metadata without changing another's.
		recs[0].Metadata["changed"] = "yes"
		for i, r := range recs[1:] {
			if _, ok := r.Metadata["changed"]; ok {
				t.Errorf("%s: changing record 0's metadata changed record %d's: %v", read.name, i+1, r.Metadata)
			}
		}
	}
}
