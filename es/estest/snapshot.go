package estest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
)

// RunSnapshots runs the conformance suite for [es.SnapshotStore] against
// the stores that newStore returns, one fresh empty store per subtest.
func RunSnapshots(t *testing.T, newStore func(t *testing.T) es.SnapshotStore) {
	t.Helper()
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, ctx context.Context, s es.SnapshotStore)
	}{
		{"NotFound", testSnapshotNotFound},
		{"RoundTrip", testSnapshotRoundTrip},
		{"KeepsNewest", testSnapshotKeepsNewest},
		{"CopiesData", testSnapshotCopiesData},
		{"ConcurrentSaves", testSnapshotConcurrentSaves},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			tt.run(t, ctx, newStore(t))
		})
	}
}

// takenAt is a time that every store can keep exactly: UTC, whole
// microseconds.
var takenAt = time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)

func snapshot(stream string, version int64, revision string) es.Snapshot {
	return es.Snapshot{
		Stream:   stream,
		Version:  version,
		Revision: revision,
		Data:     fmt.Appendf(nil, `{"version":%d,"revision":%q,"name":"Zoë ✓"}`, version, revision),
		TakenAt:  takenAt.Add(time.Duration(version) * time.Second),
	}
}

func mustSave(t *testing.T, ctx context.Context, s es.SnapshotStore, snap es.Snapshot) {
	t.Helper()
	if err := s.SaveSnapshot(ctx, snap); err != nil {
		t.Fatalf("SaveSnapshot(%s@%d, revision %q): %v", snap.Stream, snap.Version, snap.Revision, err)
	}
}

// checkSnapshot fails the test unless the stored snapshot of want.Stream is
// want.
func checkSnapshot(t *testing.T, ctx context.Context, s es.SnapshotStore, want es.Snapshot) {
	t.Helper()
	got, err := s.LoadSnapshot(ctx, want.Stream)
	if err != nil {
		t.Fatalf("LoadSnapshot(%q): %v", want.Stream, err)
	}
	if got.Stream != want.Stream || got.Version != want.Version || got.Revision != want.Revision ||
		!jsonEqual(got.Data, want.Data) || !got.TakenAt.Equal(want.TakenAt) {
		t.Fatalf("LoadSnapshot(%q) = %s@%d revision %q, data %s, taken at %v;\nwant %s@%d revision %q, data %s, taken at %v",
			want.Stream, got.Stream, got.Version, got.Revision, got.Data, got.TakenAt,
			want.Stream, want.Version, want.Revision, want.Data, want.TakenAt)
	}
}

func checkNoSnapshot(t *testing.T, ctx context.Context, s es.SnapshotStore, stream string) {
	t.Helper()
	got, err := s.LoadSnapshot(ctx, stream)
	if !errors.Is(err, es.ErrSnapshotNotFound) {
		t.Fatalf("LoadSnapshot(%q) = version %d, error %v; want an error wrapping es.ErrSnapshotNotFound", stream, got.Version, err)
	}
}

func testSnapshotNotFound(t *testing.T, ctx context.Context, s es.SnapshotStore) {
	checkNoSnapshot(t, ctx, s, "missing")
	mustSave(t, ctx, s, snapshot("order-1", 3, "v1"))
	for _, stream := range []string{"missing", "order-", "order-%", "order-10", "Order-1"} {
		checkNoSnapshot(t, ctx, s, stream)
	}
}

func testSnapshotRoundTrip(t *testing.T, ctx context.Context, s es.SnapshotStore) {
	snaps := []es.Snapshot{
		snapshot("order-ünïcødé-😀", 7, "v1"),
		snapshot("order-2", 1, "rev/2 ✓"),
		{Stream: "scalar", Version: 2, Revision: "", Data: []byte(` [1, 2, {"b": 1, "a": 2}] `), TakenAt: takenAt},
	}
	for _, snap := range snaps {
		mustSave(t, ctx, s, snap)
	}
	for _, snap := range snaps {
		checkSnapshot(t, ctx, s, snap)
	}
}

func testSnapshotKeepsNewest(t *testing.T, ctx context.Context, s es.SnapshotStore) {
	const stream = "newest"
	mustSave(t, ctx, s, snapshot(stream, 5, "v1"))
	checkSnapshot(t, ctx, s, snapshot(stream, 5, "v1"))

	mustSave(t, ctx, s, snapshot(stream, 9, "v1"))
	checkSnapshot(t, ctx, s, snapshot(stream, 9, "v1"))

	// An older snapshot is ignored, without an error.
	if err := s.SaveSnapshot(ctx, snapshot(stream, 3, "v1")); err != nil {
		t.Fatalf("SaveSnapshot at an older version: %v; want it ignored without an error", err)
	}
	checkSnapshot(t, ctx, s, snapshot(stream, 9, "v1"))

	// One at the same version replaces it: a new revision of the state.
	mustSave(t, ctx, s, snapshot(stream, 9, "v2"))
	checkSnapshot(t, ctx, s, snapshot(stream, 9, "v2"))

	// Other streams keep their own.
	mustSave(t, ctx, s, snapshot("other", 1, "v1"))
	checkSnapshot(t, ctx, s, snapshot(stream, 9, "v2"))
	checkSnapshot(t, ctx, s, snapshot("other", 1, "v1"))
}

func testSnapshotCopiesData(t *testing.T, ctx context.Context, s es.SnapshotStore) {
	snap := snapshot("copies", 1, "v1")
	want := snapshot("copies", 1, "v1")
	mustSave(t, ctx, s, snap)
	copy(snap.Data, `{"mutated":true`)
	checkSnapshot(t, ctx, s, want)

	got, err := s.LoadSnapshot(ctx, "copies")
	if err != nil {
		t.Fatalf("LoadSnapshot: %v", err)
	}
	copy(got.Data, `{"mutated":true`)
	checkSnapshot(t, ctx, s, want)
}

func testSnapshotConcurrentSaves(t *testing.T, ctx context.Context, s es.SnapshotStore) {
	const stream, n = "concurrent", 40
	order := rand.Perm(n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if err := s.SaveSnapshot(ctx, snapshot(stream, int64(order[i]+1), "v1")); err != nil {
					t.Errorf("SaveSnapshot(version %d): %v", order[i]+1, err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkSnapshot(t, ctx, s, snapshot(stream, n, "v1"))
}
