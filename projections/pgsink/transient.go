package pgsink

import (
	"errors"
	"io"
	"net"

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
		switch pgErr.Code[:2] {
		case "08", "40": // connection exception, transaction rollback
			return true
		}
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300", "55P03": // shutdown, cannot connect now, too many connections, lock not available
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
