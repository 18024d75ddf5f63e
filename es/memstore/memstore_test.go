package memstore_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/estest"
	"github.com/stratadev/strata/es/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	t.Parallel()
	estest.Run(t, func(*testing.T) es.Store { return memstore.New() }, estest.Config{
		NewLimited: func(_ *testing.T, l es.SizeLimits) es.Store {
			return memstore.New(memstore.Config{MaxEventSize: l.MaxEventSize, MaxAppendSize: l.MaxAppendSize})
		},
	})
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	estest.RunSnapshots(t, func(*testing.T) es.SnapshotStore { return memstore.New() })
}

func TestCountEvents(t *testing.T) {
	t.Parallel()
	s := memstore.New()
	var pos []es.Position
	for i := range 5 {
		res, err := s.Append(t.Context(), fmt.Sprintf("s%d", i%2), es.Any, es.EventData{Type: "T", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, res.Position)
	}
	for _, c := range []struct {
		after, upTo es.Position
		want        int64
	}{
		{es.Start, pos[4], 5},
		{es.Start, pos[0], 1},
		{pos[1], pos[3], 2},
		{pos[3], pos[3], 0},
		{pos[3], pos[1], 0},
		{pos[4], es.Position{Commit: 99, Prepare: 99}, 0},
		{es.Start, es.Position{Commit: 99, Prepare: 99}, 5},
	} {
		if n, err := s.CountEvents(t.Context(), c.after, c.upTo); err != nil || n != c.want {
			t.Errorf("CountEvents(%s, %s) = %d, %v; want %d", c.after, c.upTo, n, err, c.want)
		}
	}
}
