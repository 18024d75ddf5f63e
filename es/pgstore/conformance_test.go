package pgstore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/estest"
	"github.com/stratadev/strata/es/pgstore"
)

// The suite runs with group commit off and on (the default).
func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("grouped", func(t *testing.T) {
		t.Parallel()
		runConformance(t, pgstore.Config{})
	})
	t.Run("alone", func(t *testing.T) {
		t.Parallel()
		runConformance(t, pgstore.Config{GroupCommitMax: 1})
	})
}

func runConformance(t *testing.T, cfg pgstore.Config) {
	var pools sync.Map // *pgstore.Store → *pgxpool.Pool
	estest.Run(t, func(t *testing.T) es.Store {
		s, pool := newStore(t, cfg)
		pools.Store(s, pool)
		return s
	}, estest.Config{
		// An append inside a transaction that stays open until commit.
		HoldAppend: func(ctx context.Context, store es.Store, stream string, expected es.ExpectedVersion, events ...es.EventData) (func() error, error) {
			s := store.(*pgstore.Store)
			pool, _ := pools.Load(s)
			tx, err := pool.(*pgxpool.Pool).Begin(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := s.AppendTx(ctx, tx, stream, expected, events...); err != nil {
				tx.Rollback(context.WithoutCancel(ctx))
				return nil, err
			}
			return func() error { return tx.Commit(context.WithoutCancel(ctx)) }, nil
		},
		NewLimited: func(t *testing.T, l es.SizeLimits) es.Store {
			s, _ := newStore(t, pgstore.Config{MaxEventSize: l.MaxEventSize, MaxAppendSize: l.MaxAppendSize, GroupCommitMax: cfg.GroupCommitMax})
			return s
		},
	})
}

func TestSnapshotConformance(t *testing.T) {
	t.Parallel()
	estest.RunSnapshots(t, func(t *testing.T) es.SnapshotStore {
		s, _ := newStore(t, pgstore.Config{})
		return s
	})
}
