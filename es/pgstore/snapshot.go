package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
)

// LoadSnapshot implements [es.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (es.Snapshot, error) {
	snap := es.Snapshot{Stream: stream}
	err := s.pool.QueryRow(ctx, s.q.loadSnapshot, stream).Scan(&snap.Version, &snap.Revision, &snap.Data, &snap.TakenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return es.Snapshot{}, fmt.Errorf("pgstore: load snapshot of %s: %w", stream, es.ErrSnapshotNotFound)
	}
	if err != nil {
		return es.Snapshot{}, fmt.Errorf("pgstore: load snapshot of %s: %w", stream, err)
	}
	return snap, nil
}

// SaveSnapshot implements [es.SnapshotStore]. A snapshot replaces the stored
// one unless that one has a higher version. A zero TakenAt is stored as the
// time of the save.
func (s *Store) SaveSnapshot(ctx context.Context, snap es.Snapshot) error {
	switch {
	case snap.Stream == "" || strings.IndexByte(snap.Stream, 0) >= 0:
		return fmt.Errorf("pgstore: save snapshot: stream id %q is empty or contains a NUL byte", snap.Stream)
	case snap.Version < 0:
		return fmt.Errorf("pgstore: save snapshot of %s: negative version %d", snap.Stream, snap.Version)
	}
	if err := es.CheckData(snap.Data); err != nil {
		return fmt.Errorf("pgstore: save snapshot of %s: %w", snap.Stream, err)
	}
	_, err := s.pool.Exec(ctx, s.q.saveSnapshot, snap.Stream, snap.Version, snap.Revision, snap.Data, timeOrNil(snap.TakenAt))
	if err != nil {
		return fmt.Errorf("pgstore: save snapshot of %s: %w", snap.Stream, err)
	}
	return nil
}
