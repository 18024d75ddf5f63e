package pgsink_test

import (
	"testing"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if v, err := sink.SchemaVersion(t.Context()); err == nil {
		t.Errorf("SchemaVersion before Migrate = %d, nil; want an error", v)
	}
	for range 2 {
		if _, err := sink.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		if v, err := sink.SchemaVersion(t.Context()); err != nil || v != 1 {
			t.Errorf("SchemaVersion after Migrate = %d, %v; want 1", v, err)
		}
	}
}
