package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// newStoreInSchema is newStore that also returns the schema.
func newStoreInSchema(t *testing.T, cfg pgstore.Config) (*pgstore.Store, *pgxpool.Pool, string) {
	t.Helper()
	pool, schema := pgtest.NewSchema(t)
	cfg.Schema = schema
	cfg.Logger = slog.New(slog.DiscardHandler)
	s := pgstore.New(pool, cfg)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, pool, schema
}

// waitingPID waits for a server process whose statement names schema to
// wait for a lock of the given kind ("advisory", "relation"), and returns
// its process ID.
func waitingPID(t *testing.T, schema, lock string) int32 {
	t.Helper()
	var pid int32
	waitFor(t, func() bool {
		err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND wait_event = $1 AND strpos(query, $2) > 0
			ORDER BY backend_start LIMIT 1`, lock, schema).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return err == nil
	})
	return pid
}

func terminate(t *testing.T, pid int32) {
	t.Helper()
	var ok bool
	if err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate server process %d: %v, %v", pid, ok, err)
	}
}

// checkErrorText fails the test if err's text repeats the "pgstore: "
// prefix or shows pgx's wrapping.
func checkErrorText(t *testing.T, what string, err error) {
	t.Helper()
	msg := err.Error()
	if n := strings.Count(msg, "pgstore: "); n > 1 {
		t.Errorf("%s: error %q says \"pgstore: \" %d times; want at most once", what, msg, n)
	}
	for _, internal := range []string{"failed to", "receive message", "conn closed", "FATAL:", "unexpected EOF"} {
		if strings.Contains(msg, internal) {
			t.Errorf("%s: error %q shows the driver's %q", what, msg, internal)
		}
	}
}

// TestAppendTerminatedDuringCommit: the server process of an append is
// terminated while the append commits (a deferred trigger makes the commit
// wait for an advisory lock the test holds). The append returns an
// *es.UnknownOutcomeError in plain words, and a retry with the same events
// at the same expected version stores them once.
func TestAppendTerminatedDuringCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, schema := newStoreInSchema(t, pgstore.Config{})
	lockKey := int64(uuid.New().ID())
	sc := pgx.Identifier{schema}.Sanitize()
	if _, err := pgtest.Admin(t).Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION %[1]s.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_catalog.pg_advisory_xact_lock_shared(%[2]d);
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON %[1]s.events
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s.hold_commit()`, sc, lockKey)); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		t.Fatal(err)
	}

	events := []es.EventData{ev("A", `{}`), ev("B", `{}`)}
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "s", es.NoStream, events...)
		done <- err
	}()
	terminate(t, waitingPID(t, schema, "advisory"))
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("the append did not return")
	}
	var unknown *es.UnknownOutcomeError
	if !errors.Is(err, es.ErrUnknownOutcome) || !errors.As(err, &unknown) {
		t.Fatalf("append terminated during its commit: %v; want an *es.UnknownOutcomeError", err)
	}
	if unknown.Stream != "s" {
		t.Errorf("UnknownOutcomeError.Stream is %q; want %q", unknown.Stream, "s")
	}
	checkErrorText(t, "append terminated during its commit", err)
	if !strings.Contains(err.Error(), "terminating connection due to administrator command") {
		t.Errorf("error %q does not say why the connection ended", err)
	}

	res, err := s.Append(ctx, "s", es.NoStream, events...)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if res.Version != 2 {
		t.Errorf("retry: version %d; want 2", res.Version)
	}
	if again, err := s.Append(ctx, "s", es.NoStream, events...); err != nil || again != res {
		t.Errorf("second retry: %+v, %v; want the retry's %+v", again, err, res)
	}
	recs, err := s.ReadStream(ctx, "s", es.ReadStreamOptions{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("stream after the retries: %d events, %v; want 2", len(recs), err)
	}
}

// TestSubscribeErrorAfterKill: the server process reading for a
// subscription is terminated. The subscription ends with an error that
// says "pgstore: " once and why the connection ended, in plain words.
func TestSubscribeErrorAfterKill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, schema := newStoreInSchema(t, pgstore.Config{PollInterval: 10 * time.Millisecond})
	first := ev("A", `{}`)
	if _, err := s.Append(ctx, "s", es.NoStream, first); err != nil {
		t.Fatal(err)
	}
	live := subscribe(t, s, es.SubscribeOptions{})
	if got := live.next(t); got.ID != first.ID {
		t.Fatalf("subscription delivered %s; want A", got.Type)
	}

	// Block the subscription's next read behind a table lock, then
	// terminate it.
	tx, err := pgtest.Admin(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "events"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	terminate(t, waitingPID(t, schema, "relation"))
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	select {
	case err = <-live.errs:
	case <-time.After(waitTimeout):
		t.Fatal("the subscription did not end")
	}
	checkErrorText(t, "subscription whose read was terminated", err)
	if !strings.HasPrefix(err.Error(), "pgstore: subscribe") || !strings.Contains(err.Error(), "terminating connection due to administrator command") {
		t.Errorf("error %q does not say that the subscription's connection was terminated", err)
	}
}
