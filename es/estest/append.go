package estest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

func appendTests() []test {
	return []test{
		{"ExpectedVersionOnNewStream", testExpectedVersionOnNewStream},
		{"ExpectedVersionOnExistingStream", testExpectedVersionOnExistingStream},
		{"InvalidInput", testInvalidInput},
		{"AcceptedInput", testAcceptedInput},
		{"Atomic", testAtomic},
		{"IdempotentExact", testIdempotentExact},
		{"IdempotentAny", testIdempotentAny},
		{"DuplicateIDInOtherStream", testDuplicateIDInOtherStream},
		{"DuplicateIDNotARetry", testDuplicateIDNotARetry},
		{"AssignsIDs", testAssignsIDs},
		{"CopiesData", testCopiesData},
		{"CanceledContext", testCanceledContext},
	}
}

func testExpectedVersionOnNewStream(t *testing.T, ctx context.Context, s es.Store) {
	for _, tc := range []struct {
		name     string
		expected es.ExpectedVersion
		ok       bool
	}{
		{"any", es.Any, true},
		{"no-stream", es.NoStream, true},
		{"exact-0", es.Exact(0), true},
		{"stream-exists", es.StreamExists, false},
		{"exact-1", es.Exact(1), false},
		{"exact-3", es.Exact(3), false},
	} {
		stream := "new-" + tc.name
		evs := events("Created", 2)
		res, err := s.Append(ctx, stream, tc.expected, evs...)
		if !tc.ok {
			checkConflict(t, err, stream, tc.expected, 0)
			checkNotFound(t, ctx, s, stream, es.ReadStreamOptions{})
			continue
		}
		if err != nil {
			t.Fatalf("Append(%q, expected %s) to a new stream: %v", stream, tc.expected, err)
		}
		if res.Stream != stream || res.Version != 2 || res.Position.IsZero() {
			t.Errorf("Append(%q, expected %s) = %+v; want stream %q at version 2 with a position", stream, tc.expected, res, stream)
		}
		checkIDs(t, "ReadStream("+stream+")", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), eventIDs(evs))
	}
}

func testExpectedVersionOnExistingStream(t *testing.T, ctx context.Context, s es.Store) {
	var want []uuid.UUID // the whole log, in order
	for _, tc := range []struct {
		name     string
		expected es.ExpectedVersion
		ok       bool
	}{
		{"any", es.Any, true},
		{"stream-exists", es.StreamExists, true},
		{"exact-2", es.Exact(2), true},
		{"no-stream", es.NoStream, false},
		{"exact-0", es.Exact(0), false},
		{"exact-1", es.Exact(1), false},
		{"exact-3", es.Exact(3), false},
	} {
		stream := "existing-" + tc.name
		first := events("Created", 2)
		mustAppend(t, ctx, s, stream, es.NoStream, first...)
		want = append(want, eventIDs(first)...)

		more := events("Changed", 2)
		res, err := s.Append(ctx, stream, tc.expected, more...)
		if !tc.ok {
			checkConflict(t, err, stream, tc.expected, 2)
			checkIDs(t, "ReadStream("+stream+") after a conflict", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), eventIDs(first))
			continue
		}
		if err != nil {
			t.Fatalf("Append(%q, expected %s) to a stream at version 2: %v", stream, tc.expected, err)
		}
		if res.Version != 4 {
			t.Errorf("Append(%q, expected %s) to a stream at version 2 returned version %d, want 4", stream, tc.expected, res.Version)
		}
		want = append(want, eventIDs(more)...)
		checkIDs(t, "ReadStream("+stream+")", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), append(eventIDs(first), eventIDs(more)...))
	}
	checkIDs(t, "the log after some appends conflicted", settledLog(t, ctx, s), want)
}

func testInvalidInput(t *testing.T, ctx context.Context, s es.Store) {
	existing := event("Created", 0)
	mustAppend(t, ctx, s, "existing", es.NoStream, existing)

	good := func() es.EventData { return event("Good", 1) }
	with := func(f func(*es.EventData)) es.EventData {
		e := good()
		f(&e)
		return e
	}
	dup := good()
	long := strings.Repeat("x", es.MaxStreamLength+1)
	for _, tc := range []struct {
		name    string
		streams []string // nil: the new stream "invalid-<name>", then "existing"
		events  []es.EventData
		index   int
	}{
		{name: "empty-stream-id", streams: []string{""}, events: []es.EventData{good()}, index: -1},
		{name: "stream-id-too-long", streams: []string{long}, events: []es.EventData{good()}, index: -1},
		{name: "stream-id-not-utf8", streams: []string{"bad-\xff"}, events: []es.EventData{good()}, index: -1},
		{name: "no-events", events: nil, index: -1},
		{name: "empty-type", events: []es.EventData{with(func(e *es.EventData) { e.Type = "" })}, index: 0},
		{name: "type-not-utf8", events: []es.EventData{with(func(e *es.EventData) { e.Type = "T\xc3\x28" })}, index: 0},
		{name: "nil-data", events: []es.EventData{good(), with(func(e *es.EventData) { e.Data = nil })}, index: 1},
		{name: "empty-data", events: []es.EventData{good(), with(func(e *es.EventData) { e.Data = []byte{} })}, index: 1},
		{name: "invalid-json", events: []es.EventData{good(), good(), with(func(e *es.EventData) { e.Data = []byte(`{"a":`) })}, index: 2},
		{name: "not-json", events: []es.EventData{with(func(e *es.EventData) { e.Data = []byte(`hello`) })}, index: 0},
		{name: "trailing-garbage", events: []es.EventData{with(func(e *es.EventData) { e.Data = []byte(`{} {}`) })}, index: 0},
		{name: "metadata-not-utf8", events: []es.EventData{good(), with(func(e *es.EventData) { e.Metadata = es.Metadata{"k": "\xff"} })}, index: 1},
		{name: "duplicate-ids", events: []es.EventData{dup, good(), dup}, index: 2},
	} {
		streams := tc.streams
		if streams == nil {
			streams = []string{"invalid-" + tc.name, "existing"}
		}
		for _, stream := range streams {
			expected := es.Exact(1)
			if stream != "existing" {
				// Input is checked before the expected version: this would
				// conflict if the input were valid.
				expected = es.Exact(5)
			}
			_, err := s.Append(ctx, stream, expected, tc.events...)
			checkInvalid(t, err, stream, tc.index)
			switch {
			case tc.streams != nil:
				// An invalid stream ID cannot be read either.
			case stream == "existing":
				checkIDs(t, tc.name+": ReadStream(existing) after an invalid append", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), []uuid.UUID{existing.ID})
			default:
				checkNotFound(t, ctx, s, stream, es.ReadStreamOptions{})
			}
		}
	}
	checkIDs(t, "the log after invalid appends", settledLog(t, ctx, s), []uuid.UUID{existing.ID})
}

func testAcceptedInput(t *testing.T, ctx context.Context, s es.Store) {
	// Valid edge cases: the longest stream ID (multi-byte runes), JSON
	// scalars as data, a metadata map that is empty but not nil.
	long := strings.Repeat("é", es.MaxStreamLength/2)
	evs := []es.EventData{
		{ID: uuid.New(), Type: "Scalar", Data: []byte(`7`)},
		{ID: uuid.New(), Type: "Null", Data: []byte(`null`)},
		{ID: uuid.New(), Type: "String", Data: []byte(`"x"`), Metadata: es.Metadata{}},
	}
	res := mustAppend(t, ctx, s, long, es.NoStream, evs...)
	if res.Version != 3 {
		t.Errorf("Append to a stream with a %d-byte ID returned version %d, want 3", len(long), res.Version)
	}
	recs := mustReadStream(t, ctx, s, long, es.ReadStreamOptions{})
	if len(recs) != len(evs) {
		t.Fatalf("ReadStream of a stream with a %d-byte ID returned %d events, want %d", len(long), len(recs), len(evs))
	}
	for i, r := range recs {
		checkRecord(t, r, long, int64(i+1), evs[i])
	}
}

func testAtomic(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "atomic"
	first := events("Batch1", 3)
	res := mustAppend(t, ctx, s, stream, es.NoStream, first...)
	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	checkIDs(t, "ReadStream after one append of 3 events", recs, eventIDs(first))
	if got := versions(recs); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("versions after one append of 3 events: %v, want [1 2 3]", got)
	}
	checkLogOrder(t, "ReadStream", recs)
	if res.Version != 3 || res.Position != recs[2].Position {
		t.Fatalf("Append returned version %d at %s; want version 3 at %s, the position of its last event", res.Version, res.Position, recs[2].Position)
	}

	second := events("Batch2", 2)
	res2 := mustAppend(t, ctx, s, stream, es.Exact(3), second...)
	if res2.Version != 5 || !res.Position.Before(res2.Position) {
		t.Fatalf("second append returned version %d at %s; want version 5 after %s", res2.Version, res2.Position, res.Position)
	}

	// Failing appends of several events write none of them.
	bad := events("Bad", 3)
	bad[2].Data = []byte("{")
	if _, err := s.Append(ctx, stream, es.Exact(5), bad...); !errors.Is(err, es.ErrInvalidEvent) {
		t.Fatalf("append whose third event is invalid: got %v, want es.ErrInvalidEvent", err)
	}
	_, err := s.Append(ctx, stream, es.Exact(3), events("Late", 3)...)
	checkConflict(t, err, stream, es.Exact(3), 5)

	want := append(eventIDs(first), eventIDs(second)...)
	recs = mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	checkIDs(t, "ReadStream after failed appends", recs, want)
	if got := versions(recs); !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("versions: %v, want [1 2 3 4 5]", got)
	}
	log := settledLog(t, ctx, s)
	checkIDs(t, "the log", log, want)
	checkLogOrder(t, "the log", log)
	if log[4].Position != res2.Position {
		t.Errorf("the last event is at %s in the log, but its append returned %s", log[4].Position, res2.Position)
	}
}

func testIdempotentExact(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "retry-exact"
	first := events("First", 2)
	r1 := mustAppend(t, ctx, s, stream, es.NoStream, first...)
	if again := mustAppend(t, ctx, s, stream, es.NoStream, first...); again != r1 {
		t.Fatalf("retrying an append with NoStream returned %+v, want the original %+v", again, r1)
	}
	if again := mustAppend(t, ctx, s, stream, es.Exact(0), first...); again != r1 {
		t.Fatalf("retrying an append with Exact(0) returned %+v, want the original %+v", again, r1)
	}
	second := events("Second", 1)
	r2 := mustAppend(t, ctx, s, stream, es.Exact(2), second...)
	third := events("Third", 2)
	mustAppend(t, ctx, s, stream, es.Exact(3), third...)

	// The stream has moved on; a retry at the original place still succeeds.
	if again := mustAppend(t, ctx, s, stream, es.Exact(2), second...); again != r2 {
		t.Fatalf("retrying an append with Exact(2) after the stream moved on returned %+v, want the original %+v", again, r2)
	}
	if again := mustAppend(t, ctx, s, stream, es.NoStream, first...); again != r1 {
		t.Fatalf("retrying the first append after the stream moved on returned %+v, want the original %+v", again, r1)
	}

	want := slices.Concat(eventIDs(first), eventIDs(second), eventIDs(third))
	checkIDs(t, "ReadStream after retries", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), want)
	checkIDs(t, "the log after retries", settledLog(t, ctx, s), want)
}

func testIdempotentAny(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "retry-any"
	first := events("First", 1)
	r1 := mustAppend(t, ctx, s, stream, es.Any, first...)
	second := events("Second", 2)
	r2 := mustAppend(t, ctx, s, stream, es.Any, second...)

	if again := mustAppend(t, ctx, s, stream, es.Any, second...); again != r2 {
		t.Fatalf("retrying an append with Any returned %+v, want the original %+v", again, r2)
	}
	if again := mustAppend(t, ctx, s, stream, es.Any, first...); again != r1 {
		t.Fatalf("retrying an earlier append with Any returned %+v, want the original %+v", again, r1)
	}
	if again := mustAppend(t, ctx, s, stream, es.StreamExists, second...); again != r2 {
		t.Fatalf("retrying an append with StreamExists returned %+v, want the original %+v", again, r2)
	}

	want := append(eventIDs(first), eventIDs(second)...)
	checkIDs(t, "ReadStream after retries", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), want)
	checkIDs(t, "the log after retries", settledLog(t, ctx, s), want)
}

// checkDuplicate fails the test unless err says that one of ids is already
// stored elsewhere.
func checkDuplicate(t *testing.T, what string, err error, stream string, ids ...uuid.UUID) {
	t.Helper()
	if !errors.Is(err, es.ErrDuplicateEventID) {
		t.Fatalf("%s: got error %v, want one wrapping es.ErrDuplicateEventID", what, err)
	}
	de, ok := errors.AsType[*es.DuplicateEventIDError](err)
	if !ok {
		t.Fatalf("%s: error %q is not an *es.DuplicateEventIDError", what, err)
	}
	if de.Stream != stream || !slices.Contains(ids, de.ID) {
		t.Fatalf("%s: DuplicateEventIDError names stream %q and ID %v; want stream %q and one of %v", what, de.Stream, de.ID, stream, ids)
	}
}

func testDuplicateIDInOtherStream(t *testing.T, ctx context.Context, s es.Store) {
	e := event("Once", 0)
	mustAppend(t, ctx, s, "owner", es.NoStream, e)
	for _, expected := range []es.ExpectedVersion{es.NoStream, es.Any} {
		_, err := s.Append(ctx, "thief", expected, e)
		checkDuplicate(t, "appending an event ID stored in another stream with expected "+expected.String(), err, "thief", e.ID)
		checkNotFound(t, ctx, s, "thief", es.ReadStreamOptions{})
	}
	_, err := s.Append(ctx, "thief", es.Any, event("New", 1), e)
	checkDuplicate(t, "appending a new event and one stored in another stream", err, "thief", e.ID)
	checkNotFound(t, ctx, s, "thief", es.ReadStreamOptions{})
	checkIDs(t, "the log", settledLog(t, ctx, s), []uuid.UUID{e.ID})
}

func testDuplicateIDNotARetry(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "overlap"
	stored := events("Stored", 2)
	mustAppend(t, ctx, s, stream, es.NoStream, stored...)
	fresh := event("Fresh", 2)

	for _, tc := range []struct {
		name     string
		expected es.ExpectedVersion
		events   []es.EventData
	}{
		{"stored-then-new", es.Exact(2), []es.EventData{stored[1], fresh}},
		{"new-then-stored", es.Any, []es.EventData{fresh, stored[0]}},
		{"reordered", es.Any, []es.EventData{stored[1], stored[0]}},
		{"not-consecutive", es.Any, []es.EventData{stored[0], fresh, stored[1]}},
	} {
		_, err := s.Append(ctx, stream, tc.expected, tc.events...)
		checkDuplicate(t, tc.name, err, stream, stored[0].ID, stored[1].ID)
	}

	// The stored events named at a place where they are not: either error
	// describes the situation.
	for _, expected := range []es.ExpectedVersion{es.Exact(1), es.Exact(2)} {
		_, err := s.Append(ctx, stream, expected, stored[0])
		if !errors.Is(err, es.ErrDuplicateEventID) && !errors.Is(err, es.ErrWrongExpectedVersion) {
			t.Fatalf("re-appending version 1's event with expected %s: got %v, want es.ErrDuplicateEventID or es.ErrWrongExpectedVersion", expected, err)
		}
	}

	want := eventIDs(stored)
	checkIDs(t, "ReadStream after refused appends", mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{}), want)
	checkIDs(t, "the log after refused appends", settledLog(t, ctx, s), want)
}

func testAssignsIDs(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "assigned"
	evs := events("NoID", 3)
	for i := range evs {
		evs[i].ID = uuid.Nil
	}
	known := event("Known", 9)
	mustAppend(t, ctx, s, stream, es.NoStream, evs...)
	// The same zero-ID events again are new events, not a retry.
	mustAppend(t, ctx, s, stream, es.Exact(3), slices.Concat(evs, []es.EventData{known})...)

	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	if len(recs) != 7 {
		t.Fatalf("ReadStream returned %d events, want 7", len(recs))
	}
	seen := make(map[uuid.UUID]bool)
	for i, r := range recs {
		if r.ID == uuid.Nil {
			t.Fatalf("event %d has the zero ID; the store must assign one", i)
		}
		if seen[r.ID] {
			t.Fatalf("event %d has ID %v, which an earlier event has too", i, r.ID)
		}
		seen[r.ID] = true
	}
	if recs[6].ID != known.ID {
		t.Fatalf("an event appended with ID %v was stored with ID %v", known.ID, recs[6].ID)
	}
	for _, e := range evs {
		if e.ID != uuid.Nil {
			t.Fatalf("Append changed the caller's EventData.ID to %v", e.ID)
		}
	}
}

func testCopiesData(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "copies"
	e := es.EventData{ID: uuid.New(), Type: "Copied", Data: []byte(`{"v":"original"}`), Metadata: es.Metadata{"k": "original"}}
	want := es.EventData{ID: e.ID, Type: e.Type, Data: bytes.Clone(e.Data), Metadata: e.Metadata.Clone()}
	mustAppend(t, ctx, s, stream, es.NoStream, e)

	// Change the caller's values after the append.
	copy(e.Data, `{"v":"mutated!"}`)
	e.Metadata["k"] = "mutated"
	e.Metadata["new"] = "key"

	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	checkRecord(t, recs[0], stream, 1, want)

	// Change what a read returned.
	copy(recs[0].Data, `{"v":"mutated!"}`)
	recs[0].Metadata["k"] = "mutated"
	waitVisible(t, ctx, s, recs[0].Position)
	all, err := s.ReadAll(ctx, es.Start, 1)
	if err != nil || len(all) != 1 {
		t.Fatalf("ReadAll(Start, 1) = %d events, %v; want 1", len(all), err)
	}
	copy(all[0].Data, `{"v":"mutated!"}`)
	if all[0].Metadata == nil {
		all[0].Metadata = es.Metadata{}
	}
	all[0].Metadata["other"] = "mutated"

	checkRecord(t, mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})[0], stream, 1, want)
	checkRecord(t, readAll(t, ctx, s, es.Start)[0], stream, 1, want)
}

func testCanceledContext(t *testing.T, ctx context.Context, s es.Store) {
	mustAppend(t, ctx, s, "canceled", es.NoStream, event("Before", 0))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Append(canceled, "canceled", es.Any, event("Never", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a canceled context: got %v, want an error wrapping context.Canceled", err)
	}
	if _, err := s.ReadStream(canceled, "canceled", es.ReadStreamOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadStream with a canceled context: got %v, want an error wrapping context.Canceled", err)
	}
	if _, err := s.ReadAll(canceled, es.Start, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAll with a canceled context: got %v, want an error wrapping context.Canceled", err)
	}
	if _, err := s.Head(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Head with a canceled context: got %v, want an error wrapping context.Canceled", err)
	}
	if n := len(mustReadStream(t, ctx, s, "canceled", es.ReadStreamOptions{})); n != 1 {
		t.Errorf("the stream has %d events after an append with a canceled context, want 1", n)
	}
}
