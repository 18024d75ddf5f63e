package pgstore_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

func TestListStreamsEmpty(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	for _, opts := range []pgstore.ListStreamsOptions{{}, {Prefix: "a"}, {After: "z", Limit: 1}} {
		list, err := s.ListStreams(t.Context(), opts)
		if err != nil || len(list) != 0 {
			t.Errorf("ListStreams(%+v) on an empty store = %v, %v; want none", opts, list, err)
		}
	}
	if _, err := s.ListStreams(t.Context(), pgstore.ListStreamsOptions{Limit: -1}); err == nil {
		t.Error("ListStreams with Limit -1 succeeded; want an error")
	}
}

func TestListStreams(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	ids := []string{"a", "a-1", "a-2", "a_b", "a%c", "ab", "abc", `a\b`, "b-1", "b-2", "B", "ü-1", "a-10"}
	for _, id := range ids {
		if _, err := s.Append(ctx, id, es.NoStream, ev("Created", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, "a-1", es.Exact(1), ev("Renamed", `{}`)); err != nil {
		t.Fatal(err)
	}
	// The order is the database's collation: ask it.
	rows, err := pool.Query(ctx, "SELECT DISTINCT stream_id FROM "+pgx.Identifier{s.Schema(), "events"}.Sanitize()+" ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	sorted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}

	all, err := s.ListStreams(ctx, pgstore.ListStreamsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamIDs(all); !slices.Equal(got, sorted) {
		t.Errorf("ListStreams = %q; want %q", got, sorted)
	}
	for _, si := range all {
		want := pgstore.StreamInfo{ID: si.ID, Version: 1, LastType: "Created"}
		if si.ID == "a-1" {
			want.Version, want.LastType = 2, "Renamed"
			recs, err := s.ReadStream(ctx, "a-1", es.ReadStreamOptions{From: 2})
			if err != nil {
				t.Fatal(err)
			}
			if !si.LastRecordedAt.Equal(recs[0].RecordedAt) {
				t.Errorf("a-1: LastRecordedAt = %v; want %v, its last event's", si.LastRecordedAt, recs[0].RecordedAt)
			}
		}
		if si.Version != want.Version || si.LastType != want.LastType {
			t.Errorf("%s: Version %d, LastType %q; want %d, %q", si.ID, si.Version, si.LastType, want.Version, want.LastType)
		}
		if si.LastRecordedAt.IsZero() || time.Since(si.LastRecordedAt) > time.Hour {
			t.Errorf("%s: LastRecordedAt = %v; want about now", si.ID, si.LastRecordedAt)
		}
	}

	// Prefixes are literal: % and _ are not wildcards, \ is not an escape.
	for _, prefix := range []string{"a", "a-", "a-1", "a_", "a%", `a\`, "b", "B", "ü", "c", "a-100"} {
		var want []string
		for _, id := range sorted {
			if strings.HasPrefix(id, prefix) {
				want = append(want, id)
			}
		}
		list, err := s.ListStreams(ctx, pgstore.ListStreamsOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if got := streamIDs(list); !slices.Equal(got, want) {
			t.Errorf("ListStreams(Prefix %q) = %q; want %q", prefix, got, want)
		}
		// The same in pages of two.
		if got := pages(t, s, prefix, 2); !slices.Equal(got, want) {
			t.Errorf("ListStreams(Prefix %q) in pages of 2 = %q; want %q", prefix, got, want)
		}
	}
	for _, limit := range []int{1, 3, len(sorted), len(sorted) + 1} {
		if got := pages(t, s, "", limit); !slices.Equal(got, sorted) {
			t.Errorf("ListStreams in pages of %d = %q; want %q", limit, got, sorted)
		}
	}
}

// pages lists the streams with prefix in pages of limit, checking that
// only the last page is short.
func pages(t *testing.T, s *pgstore.Store, prefix string, limit int) []string {
	t.Helper()
	var (
		out   []string
		after string
	)
	for range 100 {
		list, err := s.ListStreams(t.Context(), pgstore.ListStreamsOptions{Prefix: prefix, After: after, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > limit {
			t.Fatalf("ListStreams(Limit %d) returned %d streams", limit, len(list))
		}
		out = append(out, streamIDs(list)...)
		if len(list) < limit {
			return out
		}
		after = list[len(list)-1].ID
	}
	t.Fatalf("ListStreams(Prefix %q, Limit %d) did not reach a short page", prefix, limit)
	return nil
}

func streamIDs(list []pgstore.StreamInfo) []string {
	ids := []string{}
	for _, si := range list {
		ids = append(ids, si.ID)
	}
	return ids
}

// On a log of many events, ListStreams probes the primary-key index and
// never scans the events table.
func TestListStreamsUsesTheIndex(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	const streams, perStream = 500, 40
	_, err := s.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range streams * perStream {
			if !yield(pgstore.ImportEvent{Stream: fmt.Sprintf("s-%04d", i%streams), Event: es.EventData{Type: "T", Data: []byte(`{}`)}}, nil) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	events := pgx.Identifier{s.Schema(), "events"}.Sanitize()
	if _, err := pool.Exec(ctx, "ANALYZE "+events); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListStreams(ctx, pgstore.ListStreamsOptions{Prefix: "s-01", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamIDs(list); !slices.Equal(got, []string{"s-0100", "s-0101", "s-0102", "s-0103", "s-0104"}) || list[0].Version != perStream {
		t.Errorf("ListStreams(Prefix s-01, Limit 5) = %+v", list)
	}
	rows, err := pool.Query(ctx, "EXPLAIN "+pgstore.ListStreamsSQL(s), "s-0100", "s-01", 5)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "events_pkey") {
		t.Errorf("the plan of ListStreams scans the table or not the primary key:\n%s", plan)
	}
}
