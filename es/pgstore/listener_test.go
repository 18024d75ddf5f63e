package pgstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgnotify"
	"github.com/stratadev/strata/internal/pgtest"
)

// listenerStore returns a migrated store on a pool of its own (see
// [pgtest.ListenerPool]), the pool, and the application name of the pool's
// listening connection.
func listenerStore(t *testing.T, cfg pgstore.Config, hold *pgtest.ListenerHold) (*pgstore.Store, *pgxpool.Pool, string) {
	t.Helper()
	_, schema := pgtest.NewSchema(t)
	pool, listener := pgtest.ListenerPool(t, hold)
	cfg.Schema = schema
	cfg.Logger = slog.New(slog.DiscardHandler)
	s := pgstore.New(pool, cfg)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, pool, listener
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
	s, _, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, nil)
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
	s, _, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, hold)
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

// When the last subscription of a store ends while the listening connection
// stays open for others, the connection releases the locks that tell appends
// that someone listens, so appends stop notifying.
func TestSubscriptionEndReleasesListeningLocks(t *testing.T) {
	t.Parallel()
	s, pool, listener := listenerStore(t, pgstore.Config{PollInterval: time.Hour}, nil)
	_, notifyLock := pgstore.LockClasses(s)
	locks := func() int {
		var n int
		if err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_locks l
			JOIN pg_catalog.pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND l.classid::int = $1 AND l.granted AND a.application_name = $2`,
			notifyLock, listener).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	keepOpen := func(channel string) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		sub, err := pgnotify.Listen(ctx, pool, pgnotify.Params{Channel: channel})
		if err != nil {
			t.Fatalf("listen to %s: %v", channel, err)
		}
		t.Cleanup(sub.Close)
	}
	keepOpen(s.Schema() + ".other")

	ctx, cancel := context.WithCancel(context.Background())
	recs := make(chan es.Record, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch, err := range s.Subscribe(ctx, es.SubscribeOptions{}) {
			if err != nil {
				return
			}
			for _, r := range batch {
				recs <- r
			}
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	// The subscription listens once caught up after a, before it reads b.
	for _, stream := range []string{"a", "b"} {
		e := appendOne(t, s, stream)
		select {
		case r := <-recs:
			if r.ID != e.ID {
				t.Fatalf("subscription delivered %v; want %v", r.ID, e.ID)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("subscription did not deliver the event of %s within 20s", stream)
		}
	}
	if got := locks(); got != 16 {
		t.Fatalf("listening locks held while subscribed: %d; want 16", got)
	}
	cancel()
	<-done
	// Listens change in order: once a later subscriber listens, the store's
	// topic is torn down.
	keepOpen(s.Schema() + ".later")
	if got := locks(); got != 0 {
		t.Errorf("listening locks held after the last subscription ended: %d; want 0", got)
	}
}
