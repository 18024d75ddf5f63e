package pgsink_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// ensured is a projection with two tables and nothing to apply.
type ensured struct{}

func (ensured) Name() string      { return "ensured" }
func (ensured) Handles() []string { return nil }
func (ensured) Tables() []string  { return []string{"ensured_a", "ensured_b"} }
func (ensured) HandleBatch(context.Context, *pgsink.Tx, []projections.Event) error {
	return nil
}
func (ensured) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("ensured_a").Sanitize()+` (k text PRIMARY KEY);
		CREATE TABLE `+tx.Table("ensured_b").Sanitize()+` (k text PRIMARY KEY)`)
	return err
}

// Many processes starting at once create a projection's tables once; a
// half-created set is refused with the tables named.
func TestEnsureTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		wg      sync.WaitGroup
		created atomic.Int32
		start   = make(chan struct{})
	)
	for range 8 {
		wg.Go(func() {
			<-start
			ok, err := e.sink.EnsureTables(t.Context(), ensured{})
			if err != nil {
				t.Errorf("EnsureTables: %v", err)
			}
			if ok {
				created.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := created.Load(); n != 1 {
		t.Errorf("%d concurrent calls created the tables, want 1", n)
	}
	if ok, err := e.sink.EnsureTables(t.Context(), ensured{}); ok || err != nil {
		t.Errorf("EnsureTables with the tables there = %v, %v; want false, nil", ok, err)
	}

	e.exec(t, `DROP TABLE {{schema}}.ensured_b`)
	ok, err := e.sink.EnsureTables(t.Context(), ensured{})
	if ok || err == nil || !strings.Contains(err.Error(), "exist (ensured_a)") || !strings.Contains(err.Error(), "do not (ensured_b)") {
		t.Errorf("EnsureTables with one table missing = %v, %v; want an error naming both", ok, err)
	}
}
