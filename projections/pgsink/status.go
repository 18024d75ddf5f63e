package pgsink

import (
	"context"

	"github.com/stratadev/strata/es/pgstore"
)

// HeldBack adapts [pgstore.Store.HeldBack] for
// projections.StatusOptions.HeldBack: the status then says which open
// transaction holds readers of the log back.
func HeldBack(store *pgstore.Store) func(context.Context) (string, bool, error) {
	return func(ctx context.Context) (string, bool, error) {
		h, held, err := store.HeldBack(ctx)
		if err != nil || !held {
			return "", false, err
		}
		return h.String(), true, nil
	}
}
