package pgstore_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// listenerStore returns a migrated store on a pool of its own (see
// [pgtest.ListenerPool]), and the application name of the pool's listening
// connection.
func listenerStore(t *testing.T, cfg pgstore.Config, hold *pgtest.ListenerHold) (*pgstore.Store, string) {
	t.Helper()
	_, schema := pgtest.NewSchema(t)
	pool, listener := pgtest.ListenerPool(t, hold)
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
	s, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, nil)
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
	if n := pgtest.Sessions(t, listener); n != 1 {
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
	hold := &pgtest.ListenerHold{Held: make(chan struct{}, 1), Release: make(chan struct{})}
	s, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, hold)
	sub := subscribe(t, s, es.SubscribeOptions{})
	nextAll(t, []*live{sub}, appendOne(t, s, "a"), "first")
	nextAll(t, []*live{sub}, appendOne(t, s, "b"), "while listening")
	pgtest.TerminateSessions(t, listener)
	select {
	case <-hold.Held:
	case <-time.After(20 * time.Second):
		t.Fatal("the listening connection was not opened again within 20s")
	}
	c := appendOne(t, s, "c") // nobody listens now
	close(hold.Release)
	nextAll(t, []*live{sub}, c, "appended while the listening connection was down")
	nextAll(t, []*live{sub}, appendOne(t, s, "d"), "after the reconnection")
}
