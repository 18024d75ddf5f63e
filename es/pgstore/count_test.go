package pgstore_test

import (
	"context"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// CountEvents counts in log order, (transaction id, sequence), where the
// sequence numbers of concurrent transactions interleave and a rolled-back
// append leaves a gap: differences of Prepare parts are not counts.
func TestCountEvents(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	// A takes sequence numbers before and after B's, and commits first in
	// log order; a rolled-back append burns two numbers in between.
	txA, _, _ := holdOpen(t, s, pool, "a", ev("A1", `{}`))
	var b []es.AppendResult
	for i := range 3 {
		res, err := s.Append(ctx, "b", es.Any, ev("B", `{}`))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, res)
		if i == 0 {
			rb, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendTx(ctx, rb, "gone", es.NoStream, ev("X", `{}`), ev("X", `{}`)); err != nil {
				t.Fatal(err)
			}
			if err := rb.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	resA, err := s.AppendTx(ctx, txA, "a", es.Exact(1), ev("A2", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	// While A is open, only B's events are committed.
	if n, err := s.CountEvents(ctx, es.Start, b[2].Position); err != nil || n != 3 {
		t.Errorf("CountEvents(start, B3) with A open = %d, %v; want 3", n, err)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a2 := resA.Position
	a1 := es.Position{Commit: a2.Commit, Prepare: 1}
	for _, c := range []struct {
		name        string
		after, upTo es.Position
		want        int64
	}{
		{"everything", es.Start, b[2].Position, 5},
		{"A's two", es.Start, a2, 2},
		{"after A", a2, b[2].Position, 3},
		{"after A1", a1, b[2].Position, 4},
		{"B2 and B3, across the gap", b[0].Position, b[2].Position, 2},
		{"inclusive end", b[1].Position, b[2].Position, 1},
		{"empty", b[2].Position, b[2].Position, 0},
		{"reversed", b[2].Position, es.Start, 0},
		{"past the end", b[2].Position, es.Position{Commit: b[2].Position.Commit + 1000}, 0},
	} {
		if n, err := s.CountEvents(ctx, c.after, c.upTo); err != nil || n != c.want {
			t.Errorf("CountEvents %s (%s, %s] = %d, %v; want %d", c.name, c.after, c.upTo, n, err, c.want)
		}
	}
	// Prepare differences would be wrong here, which is the point.
	if d := int64(b[2].Position.Prepare) - int64(a2.Prepare); d == 3 {
		t.Fatalf("the sequence numbers did not interleave (B3 - A2 = %d); the test proves nothing", d)
	}
	// The count is what ReadAll returns.
	waitFor(t, func() bool {
		h, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h == b[2].Position
	})
	recs, err := s.ReadAll(ctx, a1, 100)
	if err != nil || len(recs) != 4 {
		t.Errorf("ReadAll after A1 = %d records, %v; want 4", len(recs), err)
	}
}

// Backlog reports, from one snapshot, the readable head and the committed
// events beyond it.
func TestBacklog(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if b, err := s.Backlog(ctx); err != nil || b != (es.Backlog{}) {
		t.Fatalf("Backlog of an empty store = %+v, %v; want zero", b, err)
	}
	first, err := s.Append(ctx, "first", es.NoStream, ev("F", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		h, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h == first.Position
	})
	txA, _, _ := holdOpen(t, s, pool, "a", ev("A", `{}`))
	var last es.AppendResult
	for range 4 {
		if last, err = s.Append(ctx, "b", es.Any, ev("B", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Head != first.Position || b.Events != 4 || b.Last != last.Position || b.Since.IsZero() {
		t.Errorf("Backlog with A open = %+v; want head %s, 4 events up to %s, a Since", b, first.Position, last.Position)
	}
	if err := txA.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, err = s.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return b.Events == 0
	})
	if b.Head != last.Position || b.Last != last.Position || !b.Since.IsZero() {
		t.Errorf("Backlog after A rolled back = %+v; want head and last %s, no Since", b, last.Position)
	}
}
