package pgsink

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/internal/pgconnlost"
)

// Transient reports whether err is worth retrying: the connection was lost
// or could not be made, the server is shutting down or out of connections,
// or the transaction lost a serialization or deadlock race. It implements
// [projections.Sink].
func (s *Sink) Transient(err error) bool { return IsTransient(err) }

// IsTransient is [Sink.Transient] as a function.
func IsTransient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgerrcode.IsTransactionRollback(pgErr.Code) || pgErr.Code == pgerrcode.LockNotAvailable) {
		return true
	}
	return pgconnlost.Is(err)
}
