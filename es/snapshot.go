package es

import (
	"context"
	"time"
)

// Snapshot is an aggregate's state saved at a stream version, so loading it
// replays only the events after that version.
type Snapshot struct {
	Stream  string
	Version int64 // the stream version the state includes
	// Revision names the shape of Data. A [Repository] ignores snapshots whose
	// revision differs from its own, so changing an aggregate's fields only
	// needs a new revision, never a migration.
	Revision string
	Data     []byte // the state as JSON
	TakenAt  time.Time
}

// SnapshotStore keeps the latest snapshot of each stream.
type SnapshotStore interface {
	// LoadSnapshot returns the stream's snapshot, or an error wrapping
	// [ErrSnapshotNotFound].
	LoadSnapshot(ctx context.Context, stream string) (Snapshot, error)
	// SaveSnapshot stores s unless a snapshot at a higher version is already
	// stored for the stream.
	SaveSnapshot(ctx context.Context, s Snapshot) error
}
