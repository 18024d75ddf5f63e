package esdbstore_test

import (
	"fmt"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// EventStoreDB's positions are byte offsets in its log, so the store offers
// no count: below projections.LagCountLimit status counts by reading, and
// beyond it says that the lag is a lower bound rather than turning a
// difference of positions into a number of events.
func TestStatusLagIsEstimated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newTestServerStore(t)
	if _, ok := es.Store(store).(es.Counter); ok {
		t.Fatal("esdbstore is an es.Counter; this test expects it to count by reading")
	}
	sink := memsink.New()
	appendMany := func(n int) es.AppendResult {
		t.Helper()
		var last es.AppendResult
		for i := 0; i < n; i += 500 {
			batch := make([]es.EventData, min(500, n-i))
			for j := range batch {
				batch[j] = es.EventData{Type: "ItemAdded", Data: fmt.Appendf(nil, `{"order":"o","price":%d}`, i+j)}
			}
			var err error
			if last, err = store.Append(ctx, fmt.Sprintf("order-%d", i), es.Any, batch...); err != nil {
				t.Fatal(err)
			}
		}
		return last
	}
	last := appendMany(30)
	st, err := projections.ReadStatus(ctx, projections.StatusOptions{Store: store, Checkpoints: sink}, "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEvents != 30 || st.LagEstimated || st.Head != last.Position {
		t.Errorf("status 30 events behind %+v; want LagEvents 30, counted", st)
	}
	last = appendMany(projections.LagCountLimit)
	st, err = projections.ReadStatus(ctx, projections.StatusOptions{Store: store, Checkpoints: sink}, "p")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LagEstimated || st.LagEvents != projections.LagCountLimit || st.Head != last.Position {
		t.Errorf("status %d events behind %+v; want LagEvents %d as a lower bound (LagEstimated), head %s",
			projections.LagCountLimit+30, st, projections.LagCountLimit, last.Position)
	}
	if int64(last.Position.Prepare) == st.LagEvents {
		t.Errorf("LagEvents %d equals the head's byte offset", st.LagEvents)
	}
}
