package estest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

func readStreamTests() []test {
	return []test{
		{"RoundTrip", testRoundTrip},
		{"Options", testReadStreamOptions},
		{"NotFound", testReadStreamNotFound},
	}
}

func readAllTests() []test {
	return []test{
		{"Empty", testReadAllEmpty},
		{"Order", testReadAllOrder},
		{"Paging", testReadAllPaging},
		{"BatchSizeDefault", testDefaultBatchSize},
		{"Head", testHead},
		{"Count", testCount},
	}
}

// A store that is an [es.Counter] counts exactly the records that ReadAll
// returns after one position up to another.
func testCount(t *testing.T, ctx context.Context, s es.Store) {
	c, ok := s.(es.Counter)
	if !ok {
		t.Skip("the store is not an es.Counter")
	}
	appendMix(t, ctx, s, "count", 3, 12)
	mark(t, ctx, s)
	positions := []es.Position{es.Start}
	for _, r := range readAll(t, ctx, s, es.Start) {
		positions = append(positions, r.Position)
	}
	for i, after := range positions {
		for j, upTo := range positions {
			n, err := c.CountEvents(ctx, after, upTo)
			if want := int64(max(j-i, 0)); err != nil || n != want {
				t.Fatalf("CountEvents(%s, %s) = %d, %v; want %d, the records ReadAll returns", after, upTo, n, err, want)
			}
		}
	}
}

func testRoundTrip(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "round-trip-ünïcødé-😀"
	data := []string{
		`{"a":1,"b":[true,false,null,"x"],"c":{"d":1.5,"e":-2}}`,
		` { "spaced" :  "json" ,"zzz": 1, "aaa": 2 } `,
		`{"name":"Zoë – 日本語 – 😀","escaped":"\u00e9\n\t\"quoted\"\\","big":12345678901234567890}`,
		`"just a string"`,
		`42`,
		`-0.5e3`,
		`[]`,
		`{}`,
		`null`,
		`true`,
		`[{"nested":[{"deep":[1,2,3]}]}]`,
	}
	metadata := []es.Metadata{
		nil,
		{},
		{es.MetaCorrelationID: uuid.NewString(), es.MetaCausationID: uuid.NewString(), es.MetaCommandType: "orders.PlaceOrder"},
		{"ключ": "значение ✓", "emoji": "😀", "empty": ""},
		{es.MetaTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	evs := make([]es.EventData, len(data))
	for i, d := range data {
		evs[i] = es.EventData{
			ID:       uuid.New(),
			Type:     fmt.Sprintf("Bestellung.Aufgegeben✓.%d", i),
			Data:     []byte(d),
			Metadata: metadata[i%len(metadata)],
		}
	}
	mustAppend(t, ctx, s, stream, es.NoStream, evs[:4]...)
	res := mustAppend(t, ctx, s, stream, es.Exact(4), evs[4:]...)

	recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
	if len(recs) != len(evs) {
		t.Fatalf("ReadStream returned %d events, want %d", len(recs), len(evs))
	}
	for i, r := range recs {
		checkRecord(t, r, stream, int64(i+1), evs[i])
	}
	checkLogOrder(t, "ReadStream", recs)

	// ReadAll returns the same records.
	waitVisible(t, ctx, s, res.Position)
	all := readAll(t, ctx, s, es.Start)
	if len(all) != len(recs) {
		t.Fatalf("ReadAll returned %d events, want %d", len(all), len(recs))
	}
	for i := range all {
		checkSameRecord(t, fmt.Sprintf("event %d from ReadStream and ReadAll", i), recs[i], all[i])
	}
}

func testReadStreamOptions(t *testing.T, ctx context.Context, s es.Store) {
	const stream = "options"
	var want []uuid.UUID
	for i := range 5 {
		// Other streams' events in between must not show up.
		mustAppend(t, ctx, s, fmt.Sprintf("options-other-%d", i), es.NoStream, event("Other", i))
		e := event("Numbered", i+1)
		mustAppend(t, ctx, s, stream, es.Exact(int64(i)), e)
		want = append(want, e.ID)
	}
	mustAppend(t, ctx, s, "options-2", es.NoStream, event("Other", 9))

	for _, tc := range []struct {
		opts es.ReadStreamOptions
		want []int64
	}{
		{es.ReadStreamOptions{}, []int64{1, 2, 3, 4, 5}},
		{es.ReadStreamOptions{From: 1}, []int64{1, 2, 3, 4, 5}},
		{es.ReadStreamOptions{From: 3}, []int64{3, 4, 5}},
		{es.ReadStreamOptions{From: 5}, []int64{5}},
		{es.ReadStreamOptions{From: 6}, []int64{}},
		{es.ReadStreamOptions{Limit: 2}, []int64{1, 2}},
		{es.ReadStreamOptions{From: 2, Limit: 2}, []int64{2, 3}},
		{es.ReadStreamOptions{From: 4, Limit: 10}, []int64{4, 5}},
		{es.ReadStreamOptions{Direction: es.Backwards}, []int64{5, 4, 3, 2, 1}},
		{es.ReadStreamOptions{Direction: es.Backwards, From: 5}, []int64{5, 4, 3, 2, 1}},
		{es.ReadStreamOptions{Direction: es.Backwards, From: 3}, []int64{3, 2, 1}},
		{es.ReadStreamOptions{Direction: es.Backwards, From: 1}, []int64{1}},
		{es.ReadStreamOptions{Direction: es.Backwards, From: 9}, []int64{5, 4, 3, 2, 1}},
		{es.ReadStreamOptions{Direction: es.Backwards, Limit: 2}, []int64{5, 4}},
		{es.ReadStreamOptions{Direction: es.Backwards, From: 4, Limit: 2}, []int64{4, 3}},
		{es.ReadStreamOptions{Direction: es.Backwards, Limit: 1}, []int64{5}},
	} {
		recs := mustReadStream(t, ctx, s, stream, tc.opts)
		if got := versions(recs); !slices.Equal(got, tc.want) {
			t.Errorf("ReadStream(%+v) returned versions %v, want %v", tc.opts, got, tc.want)
			continue
		}
		for _, r := range recs {
			if r.Stream != stream || r.ID != want[r.Version-1] {
				t.Errorf("ReadStream(%+v) returned %v as %s@%d, want %v as %s@%d", tc.opts, r.ID, r.Stream, r.Version, want[r.Version-1], stream, r.Version)
			}
		}
	}
}

func testReadStreamNotFound(t *testing.T, ctx context.Context, s es.Store) {
	mustAppend(t, ctx, s, "order-1", es.NoStream, event("Created", 0))
	for _, stream := range []string{"missing", "order-", "order-%", "order-_", "Order-1", "order-1 ", "order-10"} {
		checkNotFound(t, ctx, s, stream, es.ReadStreamOptions{})
		checkNotFound(t, ctx, s, stream, es.ReadStreamOptions{Direction: es.Backwards})
		checkNotFound(t, ctx, s, stream, es.ReadStreamOptions{From: 1, Limit: 1})
	}
	// A stream whose only append failed has no events either.
	_, err := s.Append(ctx, "refused", es.StreamExists, event("Refused", 0))
	checkConflict(t, err, "refused", es.StreamExists, 0)
	checkNotFound(t, ctx, s, "refused", es.ReadStreamOptions{})
}

func testReadAllEmpty(t *testing.T, ctx context.Context, s es.Store) {
	head, err := s.Head(ctx)
	if err != nil || head != es.Start {
		t.Fatalf("Head of an empty store = %s, %v; want Start, nil", head, err)
	}
	for _, tc := range []struct {
		after es.Position
		limit int
	}{
		{es.Start, 0},
		{es.Start, 10},
		{es.Position{Commit: 5, Prepare: 5}, 10},
	} {
		recs, err := s.ReadAll(ctx, tc.after, tc.limit)
		if err != nil || len(recs) != 0 {
			t.Errorf("ReadAll(%s, %d) of an empty store = %d events, %v; want none and no error", tc.after, tc.limit, len(recs), err)
		}
	}
}

// appendMix appends n events, one to three at a time, round robin to the
// streams prefix-0 … prefix-(k-1), and returns the events in append order
// and the result of the last append.
func appendMix(t *testing.T, ctx context.Context, s es.Store, prefix string, k, n int) ([]uuid.UUID, es.AppendResult) {
	t.Helper()
	var (
		all  []uuid.UUID
		last es.AppendResult
	)
	for i := 0; len(all) < n; i++ {
		stream := fmt.Sprintf("%s-%d", prefix, i%k)
		evs := events("Mixed", min(1+i%3, n-len(all)))
		last = mustAppend(t, ctx, s, stream, es.Any, evs...)
		all = append(all, eventIDs(evs)...)
	}
	return all, last
}

func testReadAllOrder(t *testing.T, ctx context.Context, s es.Store) {
	want, last := appendMix(t, ctx, s, "order", 3, 20)
	waitVisible(t, ctx, s, last.Position)
	log := readAll(t, ctx, s, es.Start)
	checkIDs(t, "ReadAll after sequential appends", log, want)
	checkLogOrder(t, "ReadAll", log)
	if log[len(log)-1].Position != last.Position {
		t.Errorf("the last event is at %s, but its append returned %s", log[len(log)-1].Position, last.Position)
	}
	// The log agrees with the streams.
	for k := range 3 {
		stream := fmt.Sprintf("order-%d", k)
		recs := mustReadStream(t, ctx, s, stream, es.ReadStreamOptions{})
		var inLog []es.Record
		for _, r := range log {
			if r.Stream == stream {
				inLog = append(inLog, r)
			}
		}
		if len(inLog) != len(recs) {
			t.Fatalf("stream %s has %d events, the log %d of them", stream, len(recs), len(inLog))
		}
		for i := range recs {
			checkSameRecord(t, fmt.Sprintf("%s@%d from ReadStream and ReadAll", stream, i+1), recs[i], inLog[i])
		}
	}
}

func testReadAllPaging(t *testing.T, ctx context.Context, s es.Store) {
	want, last := appendMix(t, ctx, s, "paging", 4, 23)
	waitVisible(t, ctx, s, last.Position)
	full := readAll(t, ctx, s, es.Start)
	checkIDs(t, "ReadAll", full, want)

	for _, limit := range []int{1, 2, 5, 7, 22, 23, 24, 1000} {
		var got []es.Record
		after := es.Start
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: paging does not end after %d pages", limit, pages)
			}
			page, err := s.ReadAll(ctx, after, limit)
			if err != nil {
				t.Fatalf("ReadAll(%s, %d): %v", after, limit, err)
			}
			if wantLen := min(limit, len(want)-len(got)); len(page) != wantLen {
				t.Fatalf("ReadAll(%s, %d) returned %d events with %d of %d read; want %d", after, limit, len(page), len(got), len(want), wantLen)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Position
		}
		checkIDs(t, fmt.Sprintf("paging with limit %d", limit), got, want)
	}

	// after is exclusive, from any record.
	for i, r := range full {
		page, err := s.ReadAll(ctx, r.Position, 3)
		if err != nil {
			t.Fatalf("ReadAll(%s, 3): %v", r.Position, err)
		}
		checkIDs(t, fmt.Sprintf("ReadAll after event %d", i), page, want[i+1:min(i+4, len(want))])
	}
}

func testDefaultBatchSize(t *testing.T, ctx context.Context, s es.Store) {
	n := es.BatchSizeDefault + 100
	evs := events("Bulk", n)
	res := mustAppend(t, ctx, s, "bulk", es.NoStream, evs...)
	if res.Version != int64(n) {
		t.Fatalf("append of %d events returned version %d", n, res.Version)
	}
	waitVisible(t, ctx, s, res.Position)
	for _, limit := range []int{0, -1} {
		page, err := s.ReadAll(ctx, es.Start, limit)
		if err != nil {
			t.Fatalf("ReadAll(Start, %d): %v", limit, err)
		}
		checkIDs(t, fmt.Sprintf("ReadAll(Start, %d)", limit), page, eventIDs(evs[:es.BatchSizeDefault]))
		rest, err := s.ReadAll(ctx, page[len(page)-1].Position, limit)
		if err != nil {
			t.Fatalf("ReadAll(%s, %d): %v", page[len(page)-1].Position, limit, err)
		}
		checkIDs(t, fmt.Sprintf("ReadAll after the first page, limit %d", limit), rest, eventIDs(evs[es.BatchSizeDefault:]))
	}

	sub := subscribe(t, ctx, s, es.SubscribeOptions{})
	got := sub.waitFor(ctx, n)
	checkIDs(t, "Subscribe with the default batch size", got, eventIDs(evs))
	for i, b := range sub.batchSizes() {
		if b > es.BatchSizeDefault {
			t.Errorf("Subscribe with the default batch size delivered batch %d with %d events, want at most %d", i, b, es.BatchSizeDefault)
		}
	}
}

func testHead(t *testing.T, ctx context.Context, s es.Store) {
	for i := range 4 {
		res := mustAppend(t, ctx, s, fmt.Sprintf("head-%d", i%2), es.Any, events("Head", i+1)...)
		waitVisible(t, ctx, s, res.Position)
		head, err := s.Head(ctx)
		if err != nil {
			t.Fatalf("Head: %v", err)
		}
		if head != res.Position {
			t.Fatalf("Head after append %d = %s, want %s, the position of the last event", i, head, res.Position)
		}
		log := readAll(t, ctx, s, es.Start)
		if last := log[len(log)-1].Position; last != head {
			t.Fatalf("Head = %s, but the last record of the log is at %s", head, last)
		}
	}
}
