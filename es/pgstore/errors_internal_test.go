package pgstore

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/es"
)

// TestConnErrorText: a broken connection is described without pgx's
// wrapping, whatever pgx wrapped around it, and still unwraps to pgx's
// error.
func TestConnErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("failed to deallocate cached statement(s): %w", fmt.Errorf("wrapped: %w", pgconn.ErrConnClosed)), "the connection was closed"},
		{fmt.Errorf("receive message failed: %w", io.ErrUnexpectedEOF), "the connection was closed"},
		{&pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}, "terminating connection due to administrator command (SQLSTATE 57P01)"},
	} {
		err := appendError("s", tc.err, true)
		if want := "es: append to s: outcome unknown, it may or may not be stored: " + tc.want; err.Error() != want {
			t.Errorf("appendError(%q):\n got %q\nwant %q", tc.err, err, want)
		}
		if !errors.Is(err, es.ErrUnknownOutcome) || !errors.Is(err, tc.err) {
			t.Errorf("appendError(%q) = %q does not unwrap to es.ErrUnknownOutcome and the cause", tc.err, err)
		}
		if err := appendError("s", tc.err, false); errors.Is(err, es.ErrUnknownOutcome) || err.Error() != "pgstore: append to s: "+tc.want {
			t.Errorf("appendError(%q) in a transaction = %q; want %q, no unknown outcome", tc.err, err, "pgstore: append to s: "+tc.want)
		}
	}
	refusedErr := &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "40001", Message: "could not serialize access"}
	if err := appendError("s", refusedErr, true); errors.Is(err, es.ErrUnknownOutcome) {
		t.Errorf("a statement the server refused is reported as an unknown outcome: %v", err)
	}
}
