package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgnotify"
	"github.com/stratadev/strata/internal/pgtest"
)

// listenerStore returns a migrated store on a pool of its own, whose
// connections carry an application name unique to the test, and the
// application name of that pool's listening connection. When held is not
// nil, every reconnection of the listening connection after the first
// connection sends on held and waits until release is closed.
func listenerStore(t *testing.T, cfg pgstore.Config, held chan<- struct{}, release <-chan struct{}) (*pgstore.Store, string) {
	t.Helper()
	_, schema := pgtest.NewSchema(t)
	pcfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	app := "pgstore-" + hex.EncodeToString(b[:])
	listener := pgnotify.AppName(app)
	pcfg.MaxConns = 24
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	pcfg.ConnConfig.RuntimeParams["search_path"] = ""
	if held != nil {
		var connects atomic.Int32
		pcfg.ConnConfig.ValidateConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
			if pc.ParameterStatus("application_name") != listener || connects.Add(1) == 1 {
				return nil
			}
			held <- struct{}{}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg.Schema = schema
	cfg.Logger = slog.New(slog.DiscardHandler)
	s := pgstore.New(pool, cfg)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, listener
}

func appendOne(t *testing.T, s *pgstore.Store, stream string) es.EventData {
	t.Helper()
	e := ev("T", `{}`)
	if _, err := s.Append(t.Context(), stream, es.Any, e); err != nil {
		t.Fatal(err)
	}
	return e
}

// nextAll checks that every subscription delivers e next.
func nextAll(t *testing.T, subs []*live, e es.EventData, what string) {
	t.Helper()
	for i, l := range subs {
		if got := l.next(t); got.ID != e.ID {
			t.Fatalf("subscription %d delivered %v %s; want %v", i, got.ID, what, e.ID)
		}
	}
}

// Twenty subscriptions on one pool listen on one connection, all are woken
// by notifications, and the connection is closed when the last ends.
func TestSubscriptionsShareOneListeningConnection(t *testing.T) {
	t.Parallel()
	s, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, nil, nil)
	// Cleanups run last-in first-out: this one after the subscriptions end.
	t.Cleanup(func() { pgtest.WaitForSessions(t, listener, 0) })
	subs := make([]*live, 20)
	for i := range subs {
		subs[i] = subscribe(t, s, es.SubscribeOptions{})
	}
	// Each subscription listens once caught up, after delivering a, before
	// it reads b.
	nextAll(t, subs, appendOne(t, s, "a"), "first")
	nextAll(t, subs, appendOne(t, s, "b"), "second")
	var n int
	if err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_stat_activity
		WHERE application_name = $1`, listener).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("listening connections for %d subscriptions: %d; want 1", len(subs), n)
	}
	// All listen: only a notification can wake them within the hour.
	nextAll(t, subs, appendOne(t, s, "c"), "after all listen")
}

// When the listening connection is terminated, an event appended before it
// is back is delivered: after reconnecting, the subscription reads again
// without waiting for its poll.
func TestSubscribeAfterListenerTerminated(t *testing.T) {
	t.Parallel()
	held, release := make(chan struct{}, 1), make(chan struct{})
	s, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, held, release)
	sub := subscribe(t, s, es.SubscribeOptions{})
	nextAll(t, []*live{sub}, appendOne(t, s, "a"), "first")
	nextAll(t, []*live{sub}, appendOne(t, s, "b"), "while listening")
	if _, err := pgtest.Admin(t).Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
		WHERE application_name = $1`, listener); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the listening connection was not opened again within 20s")
	}
	c := appendOne(t, s, "c") // nobody listens now
	close(release)
	nextAll(t, []*live{sub}, c, "appended while the listening connection was down")
	nextAll(t, []*live{sub}, appendOne(t, s, "d"), "after the reconnection")
}
