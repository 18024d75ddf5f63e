package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// connError is a failed connection to the server, described in plain words:
// pgx wraps the cause in text about its own machinery ("failed to
// deallocate cached statement(s): conn closed"), which says nothing to a
// user. It unwraps to pgx's error, so errors.Is and errors.As still reach
// it, and to the context's error when the context ended.
type connError struct {
	err error
}

func (e *connError) Error() string { return connCause(e.err) }

func (e *connError) Unwrap() error { return e.err }

// connCause says why a connection failed, without the driver's wrapping.
func connCause(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	case errors.Is(err, context.Canceled):
		return "context canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "context deadline exceeded"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, net.ErrClosed):
		return "the connection was closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "the connection was reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the server refused the connection"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return "cannot connect: " + innermost(connectErr).Error()
	}
	return innermost(err).Error()
}

// innermost follows err's chain of single wrappers to its end.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// refused reports whether err is the server refusing a statement: an error
// with severity ERROR, which aborts the statement and its transaction and
// leaves the connection usable. Anything else that fails once a statement
// was sent (a FATAL error, such as the server process being terminated, a
// failed read or write, a connection that pgx closed) leaves unknown whether
// the statement committed; pgconn.SafeToRetry cannot tell either, since pgx
// labels some of these errors safe to retry although the statement was
// sent.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	severity := pgErr.SeverityUnlocalized
	if severity == "" {
		severity = pgErr.Severity
	}
	return severity == "ERROR" && !pgerrcode.IsConnectionException(pgErr.Code)
}

// brokeConn reports whether err says that the connection failed or could
// not be made, as opposed to a refused statement or an error of the
// caller's own.
func brokeConn(err error) bool {
	var (
		pgErr      *pgconn.PgError
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &pgErr):
		return !refused(err)
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	}
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// prefixed is an error of the store's own, whose text already starts with
// "pgstore: ", seen from an operation that adds its own prefix: the text
// says "pgstore: " once. It unwraps to the error.
type prefixed struct {
	prefix string // such as "pgstore: subscribe: "
	err    error
}

func (e *prefixed) Error() string { return e.prefix + strings.TrimPrefix(e.err.Error(), "pgstore: ") }

func (e *prefixed) Unwrap() error { return e.err }
