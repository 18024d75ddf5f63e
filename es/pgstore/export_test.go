package pgstore

import (
	"context"

	"github.com/stratadev/strata/es"
)

// ReadAllSQL returns the statement ReadAll runs, for EXPLAIN in tests.
func ReadAllSQL(s *Store) string { return s.q.readAll }

// LockClasses returns the first keys of the store's advisory locks.
func LockClasses(s *Store) (stream, notify int32) { return s.streamLock, s.notifyLock }

// StreamKey returns the second key of a stream's advisory lock.
func StreamKey(stream string) int32 { return streamKey(stream) }

// AppendsIdle reports whether no append is in flight that may not notify
// and no committed event is pending after the position after.
func AppendsIdle(ctx context.Context, s *Store, after es.Position) (bool, error) {
	return s.appendsIdle(ctx, after.Commit, int64(after.Prepare))
}
