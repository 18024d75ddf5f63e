package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/stratadev/strata/es"
)

// LoadSnapshot implements [es.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (es.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return es.Snapshot{}, fmt.Errorf("memstore: load snapshot of %s: %w", stream, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap, ok := s.snaps[stream]
	if !ok {
		return es.Snapshot{}, fmt.Errorf("memstore: load snapshot of %s: %w", stream, es.ErrSnapshotNotFound)
	}
	snap.Data = bytes.Clone(snap.Data)
	return snap, nil
}

// SaveSnapshot implements [es.SnapshotStore]. A snapshot at a lower version
// than the stored one is ignored without an error; one at the same version
// replaces it.
func (s *Store) SaveSnapshot(ctx context.Context, snap es.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: save snapshot of %s: %w", snap.Stream, err)
	}
	if snap.Stream == "" {
		return errors.New("memstore: save snapshot: stream id is empty")
	}
	snap.Data = bytes.Clone(snap.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.snaps[snap.Stream]; ok && old.Version > snap.Version {
		return nil
	}
	s.snaps[snap.Stream] = snap
	return nil
}
