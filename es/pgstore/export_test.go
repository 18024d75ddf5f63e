package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"

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

// GroupHooks are test hooks of group commit; see group.
type GroupHooks struct {
	// Hold is called by an append about to be sent alone, before it is.
	Hold func()
	// Queued is called with the queue's length after an append queued.
	Queued func(n int)
	// Sending is called with the server process ID of the group's
	// connection and the group's size before a group is sent.
	Sending func(pid uint32, n int)
}

// SetGroupHooks sets the group commit hooks of s, before s is used.
func SetGroupHooks(s *Store, h GroupHooks) {
	s.group.hold = h.Hold
	s.group.queuedHook = h.Queued
	if h.Sending != nil {
		s.group.sending = func(conn *pgx.Conn, n int) { h.Sending(conn.PgConn().PID(), n) }
	}
}

// PendingSQL returns the statement a subscription runs to learn whether
// committed events follow a position, for EXPLAIN in tests.
func PendingSQL(s *Store) string { return s.q.pending }
