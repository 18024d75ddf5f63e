package peerbench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/stratadev/strata/es"
)

// TestSidesAgree runs each side's operations once on the fast server and
// checks that every side wrote and read back the same events with equal
// payloads, so that a benchmark cannot measure a side that does nothing.
func TestSidesAgree(t *testing.T) {
	t.Parallel()
	sides := newSides(t, fast)
	const imported = 300 // three streams of perStream

	var want []readEvent
	add := func(stream string, from, to int64) {
		for v := from; v <= to; v++ {
			want = append(want, readEvent{Stream: stream, Version: v, Event: newOrderPlaced(stream, v)})
		}
	}
	add("one", 1, 1)
	add("one", 2, 2)
	add("hundred", 1, 100)
	for i := range imported / perStream {
		add(fmt.Sprintf("imp-%d", i), 1, perStream)
	}

	for _, name := range sideNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := sides[name], t.Context()
			for _, a := range []struct {
				stream  string
				version int64
				n       int
			}{{"one", 0, 1}, {"one", 1, 1}, {"hundred", 0, 100}} {
				if _, err := s.append(ctx, a.stream, a.version, a.n); err != nil {
					t.Fatalf("append %d to %s at %d: %v", a.n, a.stream, a.version, err)
				}
			}
			if err := s.importEvents(ctx, "imp", imported, perStream); err != nil {
				t.Fatalf("import: %v", err)
			}
			if err := s.settle(ctx, len(want)); err != nil {
				t.Fatal(err)
			}
			var got []readEvent
			if err := s.readAll(ctx, func(ev readEvent) { got = append(got, ev) }); err != nil {
				t.Fatalf("read all: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d events, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("event %d: got %+v, want %+v", i, got[i], want[i])
				}
			}
			head, err := s.head(ctx)
			if err != nil || head.IsZero() {
				t.Fatalf("head: %v, %v; want a position after the start", head, err)
			}
		})
	}
}

// TestPayloadSize checks the events are the size the documentation says.
func TestPayloadSize(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(newOrderPlaced("order-123", 1))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b); n < 290 || n > 310 {
		t.Errorf("an OrderPlaced is %d bytes of JSON, want about 300:\n%s", n, b)
	}
}

// TestLiveRead writes from 8 writers while each side's live reader reads:
// strata's must see every event exactly once. The other sides' readers
// may skip events that commit after a later position was read; how many
// is logged, not checked.
func TestLiveRead(t *testing.T) {
	t.Parallel()
	const n = 400
	sides := newSides(t, fast)
	for _, name := range sideNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := liveRead(t.Context(), sides[name], n, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Written != n {
				t.Errorf("written %d events, want %d", res.Written, n)
			}
			if res.Twice != 0 || res.Foreign != 0 {
				t.Errorf("the reader saw %d events twice and %d it was not meant to see, want 0 and 0", res.Twice, res.Foreign)
			}
			if name == "strata" {
				if res.Skipped != 0 {
					t.Errorf("strata's live reader skipped %d of %d events, want 0", res.Skipped, res.Written)
				}
				return
			}
			t.Logf("%s's live reader skipped %d of %d events", name, res.Skipped, res.Written)
		})
	}
}

// dropping is a side whose live reader loses the 5th, 15th, 25th ... event
// it reads: a tenth of them, never the last of a multiple of ten.
type dropping struct {
	side
	n int
}

func (d *dropping) live(ctx context.Context, after es.Position, visit func(readEvent, es.Position)) error {
	return d.side.live(ctx, after, func(ev readEvent, pos es.Position) {
		d.n++
		if d.n%10 != 5 {
			visit(ev, pos)
		}
	})
}

// TestLiveReadCountsSkips checks the check: a reader that loses events is
// caught, with the number it lost.
func TestLiveReadCountsSkips(t *testing.T) {
	t.Parallel()
	const n = 200
	res, err := liveRead(t.Context(), &dropping{side: newStrataSide(t, fast)}, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (liveResult{Written: n, Skipped: n / 10}); res != want {
		t.Errorf("live read of a reader that drops a tenth of the events: got %+v, want %+v", res, want)
	}
}
