package pgstore_test

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// importEvents yields n events spread round-robin over the given number of
// streams.
func importEvents(n, streams int) iter.Seq2[pgstore.ImportEvent, error] {
	return func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range n {
			e := pgstore.ImportEvent{
				Stream: fmt.Sprintf("import-%d", i%streams),
				Event:  es.EventData{Type: "Imported", Data: fmt.Appendf(nil, `{"i":%d,"name":"event number %d"}`, i, i)},
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

func fromSlice(evs []pgstore.ImportEvent) iter.Seq2[pgstore.ImportEvent, error] {
	return func(yield func(pgstore.ImportEvent, error) bool) {
		for _, e := range evs {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Append(ctx, "before", es.NoStream, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []pgstore.ImportEvent{
		{Stream: "order-1", Event: ev("Placed", `{"o":1}`), RecordedAt: old},
		{Stream: "order-2", Event: es.EventData{Type: "Placed", Data: []byte(`{"o":2}`), Metadata: es.Metadata{"k": "v"}}},
		{Stream: "order-1", Event: ev("Paid", `{"o":1}`)},
		{Stream: "order-1", Event: ev("Shipped", `{"o":1}`)},
	}
	res, err := s.Import(ctx, fromSlice(in))
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams != 2 || res.Events != 4 || res.Position.IsZero() {
		t.Errorf("Import = %+v; want 2 streams, 4 events and a position", res)
	}

	o1, err := s.ReadStream(ctx, "order-1", es.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{o1[0].Type, o1[1].Type, o1[2].Type}; len(o1) != 3 || !slices.Equal(got, []string{"Placed", "Paid", "Shipped"}) ||
		o1[2].Version != 3 || o1[0].ID != in[0].Event.ID || !o1[0].RecordedAt.Equal(old) {
		t.Errorf("order-1 = %+v", o1)
	}
	// The global log has them in import order, after what was there.
	live := subscribe(t, s, es.SubscribeOptions{})
	if first := live.next(t); first.Stream != "before" {
		t.Fatalf("first event in the log is from %s", first.Stream)
	}
	for i, want := range in {
		got := live.next(t)
		if got.Stream != want.Stream || got.Type != want.Event.Type {
			t.Fatalf("log event %d is %s/%s; want %s/%s", i+1, got.Stream, got.Type, want.Stream, want.Event.Type)
		}
		if i == len(in)-1 && got.Position != res.Position {
			t.Errorf("last imported position %s; Import said %s", got.Position, res.Position)
		}
		if got.ID == uuid.Nil || (want.Event.Metadata != nil && got.Metadata["k"] != "v") {
			t.Errorf("log event %d = %+v", i+1, got)
		}
	}
	// Appends continue the imported streams.
	if r, err := s.Append(ctx, "order-2", es.Exact(1), ev("Paid", `{}`)); err != nil || r.Version != 2 {
		t.Errorf("append after import = %+v, %v; want version 2", r, err)
	}
	// An empty import does nothing.
	if res, err := s.Import(ctx, fromSlice(nil)); err != nil || res != (pgstore.ImportResult{}) {
		t.Errorf("empty import = %+v, %v", res, err)
	}
}

func TestImportErrors(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	stored := ev("T", `{}`)
	if _, err := s.Append(ctx, "exists", es.NoStream, stored, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	good := func(stream string) pgstore.ImportEvent {
		return pgstore.ImportEvent{Stream: stream, Event: ev("T", `{}`)}
	}

	_, err := s.Import(ctx, fromSlice([]pgstore.ImportEvent{good("new-1"), good("exists"), good("new-2")}))
	if vc, ok := errors.AsType[*es.VersionConflictError](err); !ok || vc.Stream != "exists" || vc.Actual != 2 || vc.Expected != es.NoStream {
		t.Errorf("import into an existing stream: %v; want a VersionConflictError for exists at 2", err)
	}

	bad := good("new-1")
	bad.Event.Data = []byte(`{"a":"\u0000"}`)
	_, err = s.Import(ctx, fromSlice([]pgstore.ImportEvent{good("new-1"), good("new-2"), bad}))
	if ie, ok := errors.AsType[*es.InvalidEventError](err); !ok || ie.Index != 2 || ie.Stream != "new-1" {
		t.Errorf("import of bad data: %v; want an InvalidEventError for event 2", err)
	}

	_, err = s.Import(ctx, fromSlice([]pgstore.ImportEvent{good("new-1"), {Stream: "new-1", Event: stored}}))
	if de, ok := errors.AsType[*es.DuplicateEventIDError](err); !ok || de.ID != stored.ID {
		t.Errorf("import of a stored ID: %v; want a DuplicateEventIDError for %v", err, stored.ID)
	}

	_, err = s.Import(ctx, fromSlice([]pgstore.ImportEvent{good(""), good("new-1")}))
	if ie, ok := errors.AsType[*es.InvalidEventError](err); !ok || ie.Index != -1 {
		t.Errorf("import with an empty stream ID: %v; want an InvalidEventError", err)
	}

	source := errors.New("source broke")
	_, err = s.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
		if yield(good("new-1"), nil) {
			yield(pgstore.ImportEvent{}, source)
		}
	})
	if !errors.Is(err, source) {
		t.Errorf("import from a failing source: %v; want its error", err)
	}

	// Nothing of the failed imports was written.
	for _, stream := range []string{"new-1", "new-2"} {
		if _, err := s.ReadStream(ctx, stream, es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
			t.Errorf("ReadStream(%s) after failed imports: %v; want not found", stream, err)
		}
	}
}

// Import refuses an event over Config.MaxEventSize, and writes nothing.
func TestImportEventTooLarge(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{MaxEventSize: 100})
	ctx := t.Context()
	big := pgstore.ImportEvent{Stream: "big", Event: ev("T", `"`+strings.Repeat("x", 97)+`"`)} // 1 + 99 bytes: at the limit
	if _, err := s.Import(ctx, fromSlice([]pgstore.ImportEvent{big})); err != nil {
		t.Fatalf("import of an event at the limit: %v", err)
	}
	over := pgstore.ImportEvent{Stream: "over", Event: ev("T", `"`+strings.Repeat("x", 98)+`"`)}
	_, err := s.Import(ctx, fromSlice([]pgstore.ImportEvent{{Stream: "over", Event: ev("T", `{}`)}, over}))
	if ie, ok := errors.AsType[*es.InvalidEventError](err); !ok || ie.Index != 1 || ie.Stream != "over" || ie.Size != 101 || ie.Limit != 100 {
		t.Errorf("import of an event over the limit: %v; want an InvalidEventError for event 1, 101 bytes against 100", err)
	}
	if _, err := s.ReadStream(ctx, "over", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("ReadStream(over) after the refused import: %v; want not found", err)
	}
}
