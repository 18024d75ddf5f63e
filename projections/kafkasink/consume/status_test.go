package consume_test

import (
	"errors"
	"testing"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/consume"
)

// In a schema where no consumer ever ran, there are no groups, and the
// status of any group is an unknown group, not a database error.
func TestStatusWithoutConsumers(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	groups, err := consume.Groups(t.Context(), pool, schema)
	if err != nil || len(groups) != 0 {
		t.Errorf("Groups = %v, %v; want none", groups, err)
	}
	if _, err := consume.Status(t.Context(), pool, schema, "g"); !errors.Is(err, consume.ErrUnknownGroup) {
		t.Errorf("Status: %v; want ErrUnknownGroup", err)
	}
	if err := consume.Migrate(t.Context(), pool, schema, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := consume.Status(t.Context(), pool, schema, "g"); !errors.Is(err, consume.ErrUnknownGroup) {
		t.Errorf("Status after Migrate: %v; want ErrUnknownGroup", err)
	}
}
