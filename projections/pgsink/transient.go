package pgsink

import (
	"errors"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err is worth retrying: the connection was lost
// or could not be made, the server is shutting down or out of connections,
// or the transaction lost a serialization or deadlock race. It implements
// [projections.Sink].
func (s *Sink) Transient(err error) bool { return IsTransient(err) }

// IsTransient is [Sink.Transient] as a function.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgerrcode.IsConnectionException(pgErr.Code) || pgerrcode.IsTransactionRollback(pgErr.Code) {
			return true
		}
		switch pgErr.Code {
		case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow,
			pgerrcode.TooManyConnections, pgerrcode.LockNotAvailable:
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &netErr) || errors.As(err, &connectErr)
}
