package pgstore_test

import (
	"context"
	"maps"
	"testing"
	"time"

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
		{"ReadAll", func() ([]es.Record, error) { return readAllVisible(t, s, len(want)) }},
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

// readAllVisible reads the whole log once it shows n events: another
// test's open transaction on the shared server can hold the global read
// back for a moment (the gate that keeps readers from skipping events).
func readAllVisible(t *testing.T, s *pgstore.Store, n int) ([]es.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		recs, err := s.ReadAll(ctx, es.Start, 100)
		if err != nil || len(recs) >= n {
			return recs, err
		}
		select {
		case <-ctx.Done():
			return recs, nil // the caller reports the count
		case <-time.After(5 * time.Millisecond):
		}
	}
}
