package projections_test

import (
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

// A store that counts (memstore is an es.Counter) gives an exact lag
// however far behind the projection is.
func TestStatusLagBeyondCountLimit(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", projections.LagCountLimit+5)
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: store, Checkpoints: sink}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEstimated || st.LagEvents != projections.LagCountLimit+5 || st.Lag <= 0 || st.HeldBackEvents != 0 || st.HeldBack != "" {
		t.Errorf("status %+v; want an exact lag of %d events and nothing held back", st, projections.LagCountLimit+5)
	}
}

// plainStore hides the optional interfaces of the store it wraps, like a
// store that implements only es.Store.
type plainStore struct{ es.Store }

// Without a counter, status counts by reading up to LagCountLimit events
// and says the figure is a lower bound; it never makes up a count from
// positions.
func TestStatusLagWithoutCounter(t *testing.T) {
	t.Parallel()
	mem, sink := memstore.New(), memsink.New()
	store := plainStore{mem}
	appendAdded(t, mem, "a", 40)
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: store, Checkpoints: sink}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if st.LagEstimated || st.LagEvents != 40 {
		t.Errorf("status below the limit %+v; want LagEvents 40, exact", st)
	}
	appendAdded(t, mem, "b", projections.LagCountLimit)
	st, err = projections.ReadStatus(t.Context(), projections.StatusOptions{Store: store, Checkpoints: sink}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LagEstimated || st.LagEvents != projections.LagCountLimit || st.Lag <= 0 {
		t.Errorf("status beyond the limit %+v; want LagEvents %d as a lower bound (LagEstimated)", st, projections.LagCountLimit)
	}
}
