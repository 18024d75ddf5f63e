package pgnotify_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/internal/pgnotify"
	"github.com/stratadev/strata/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func listen(t *testing.T, pool *pgxpool.Pool, p pgnotify.Params) *pgnotify.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sub, err := pgnotify.Listen(ctx, pool, p)
	if err != nil {
		t.Fatalf("listen to %s: %v", p.Channel, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

func notify(t *testing.T, pool *pgxpool.Pool, channel, payload string) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatal(err)
	}
}

func awaitWake(t *testing.T, sub *pgnotify.Subscription, what string) {
	t.Helper()
	select {
	case <-sub.C():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no wake-up within 20s", what)
	}
}

func channel(t *testing.T, i int) string {
	return fmt.Sprintf("%s.%d", strings.ToLower(t.Name()), i)
}

// Twenty subscribers on four channels share one listening connection, each
// is woken by the notifications of its channel only, and the connection is
// closed when the last one closes.
func TestOneConnectionPerPool(t *testing.T) {
	t.Parallel()
	pool, listener := pgtest.ListenerPool(t, nil)
	const channels, perChannel = 4, 5
	subs := make([][]*pgnotify.Subscription, channels)
	for c := range channels {
		for range perChannel {
			subs[c] = append(subs[c], listen(t, pool, pgnotify.Params{Channel: channel(t, c)}))
		}
	}
	if got := pgtest.Sessions(t, listener); got != 1 {
		t.Fatalf("listening connections with %d subscribers on %d channels: %d; want 1", channels*perChannel, channels, got)
	}
	// Notifications arrive in commit order on the one connection: once the
	// subscribers of channel 1 woke, those of channel 0 have too, and the
	// others have not.
	notify(t, pool, channel(t, 0), "")
	notify(t, pool, channel(t, 1), "")
	for c := range 2 {
		for i, sub := range subs[c] {
			awaitWake(t, sub, fmt.Sprintf("subscriber %d of channel %d", i, c))
		}
	}
	for c := 2; c < channels; c++ {
		for i, sub := range subs[c] {
			if len(sub.C()) != 0 {
				t.Errorf("subscriber %d of channel %d woke for a notification on another channel", i, c)
			}
		}
	}
	for c := range channels {
		for _, sub := range subs[c] {
			sub.Close()
		}
	}
	pgtest.WaitForSessions(t, listener, 0)
}

// A subscriber that never looks does not hold up the others: its wake-ups
// coalesce into one.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.ListenerPool(t, nil)
	slow := listen(t, pool, pgnotify.Params{Channel: channel(t, 0)})
	fast := listen(t, pool, pgnotify.Params{Channel: channel(t, 0)})
	for i := range 50 {
		notify(t, pool, channel(t, 0), "")
		awaitWake(t, fast, fmt.Sprintf("fast subscriber, notification %d", i))
	}
	if got := len(slow.C()); got != 1 {
		t.Errorf("pending wake-ups of the slow subscriber: %d; want 1", got)
	}
}

// Match picks notifications by payload.
func TestMatch(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.ListenerPool(t, nil)
	a := listen(t, pool, pgnotify.Params{Channel: channel(t, 0), Match: func(p string) bool { return p == "a" }})
	b := listen(t, pool, pgnotify.Params{Channel: channel(t, 0), Match: func(p string) bool { return p == "b" }})
	notify(t, pool, channel(t, 0), "a")
	awaitWake(t, a, "subscriber of a")
	notify(t, pool, channel(t, 0), "b")
	awaitWake(t, b, "subscriber of b")
	if len(a.C()) != 0 {
		t.Error("subscriber of a woke for b")
	}
	if len(b.C()) != 0 {
		t.Error("subscriber of b woke for a")
	}
}

// When the listening connection is terminated, the notifier connects again,
// listens to every channel again, and then wakes every subscriber, because
// notifications sent meanwhile are lost.
func TestReconnect(t *testing.T) {
	t.Parallel()
	hold := &pgtest.ListenerHold{Held: make(chan struct{}, 1), Release: make(chan struct{})}
	pool, listener := pgtest.ListenerPool(t, hold)
	subs := []*pgnotify.Subscription{
		listen(t, pool, pgnotify.Params{Channel: channel(t, 0)}),
		listen(t, pool, pgnotify.Params{Channel: channel(t, 0), Match: func(string) bool { return false }}),
		listen(t, pool, pgnotify.Params{Channel: channel(t, 1)}),
	}
	pgtest.TerminateSessions(t, listener)
	select {
	case <-hold.Held:
	case <-time.After(20 * time.Second):
		t.Fatal("the notifier did not reconnect within 20s")
	}
	notify(t, pool, channel(t, 0), "") // lost: nobody listens
	for i, sub := range subs {
		if len(sub.C()) != 0 {
			t.Errorf("subscriber %d woke before the connection was back", i)
		}
	}
	close(hold.Release)
	for i, sub := range subs {
		awaitWake(t, sub, fmt.Sprintf("subscriber %d after the reconnection", i))
	}
	if got := pgtest.Sessions(t, listener); got != 1 {
		t.Errorf("listening connections after the reconnection: %d; want 1", got)
	}
	// Listening again.
	notify(t, pool, channel(t, 1), "")
	awaitWake(t, subs[2], "subscriber of channel 1 after the reconnection")
}

// Setup runs before the channel is listened to, Teardown after its last
// subscriber closed, while the connection stays for the others.
func TestSetupTeardown(t *testing.T) {
	t.Parallel()
	pool, listener := pgtest.ListenerPool(t, nil)
	var b [2]byte
	rand.Read(b[:])
	key := int(b[0])<<8 | int(b[1])
	held := func() int {
		var n int
		if err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_locks l
			JOIN pg_catalog.pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND l.classid = 424242 AND l.objid = $1 AND l.granted
			AND a.application_name = $2`, key, listener).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	other := listen(t, pool, pgnotify.Params{Channel: channel(t, 0)})
	locked := listen(t, pool, pgnotify.Params{
		Channel:  channel(t, 1),
		Setup:    fmt.Sprintf("SELECT pg_advisory_lock_shared(424242, %d)", key),
		Teardown: fmt.Sprintf("SELECT pg_advisory_unlock_shared(424242, %d)", key),
	})
	if got := held(); got != 1 {
		t.Fatalf("locks taken by Setup: %d; want 1", got)
	}
	locked.Close()
	// Listens change in order: once a later subscriber is listening, the
	// teardown has run.
	listen(t, pool, pgnotify.Params{Channel: channel(t, 2)})
	if got := held(); got != 0 {
		t.Errorf("locks held after Teardown: %d; want 0", got)
	}
	notify(t, pool, channel(t, 0), "")
	awaitWake(t, other, "subscriber of channel 0")
}

// Listen fails, and leaves nothing running, when no connection can be
// opened.
func TestListenUnreachable(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", 1
	cfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sub, err := pgnotify.Listen(t.Context(), pool, pgnotify.Params{Channel: "unreachable"})
	if err == nil {
		sub.Close()
		t.Fatal("Listen on an unreachable server: no error")
	}
	if !strings.Contains(err.Error(), "open the listening connection") {
		t.Errorf("Listen on an unreachable server: %v; want it to say it could not open the listening connection", err)
	}
}

// Listen returns only once its channel is listened to, also when the
// connection is open already: a notification sent right after it returns
// wakes the subscriber. (Setup sleeps to leave a window in which a Listen
// that returned early would miss it.)
func TestListenReturnsOnceListening(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.ListenerPool(t, nil)
	listen(t, pool, pgnotify.Params{Channel: channel(t, 0)})
	sub := listen(t, pool, pgnotify.Params{Channel: channel(t, 1), Setup: "SELECT pg_sleep(0.2)"})
	notify(t, pool, channel(t, 1), "")
	awaitWake(t, sub, "subscriber notified right after Listen returned")
}

// While the connection is being opened again, Listen waits for it.
func TestListenWaitsForReconnection(t *testing.T) {
	t.Parallel()
	hold := &pgtest.ListenerHold{Held: make(chan struct{}, 1), Release: make(chan struct{})}
	pool, listener := pgtest.ListenerPool(t, hold)
	first := listen(t, pool, pgnotify.Params{Channel: channel(t, 0)})
	pgtest.TerminateSessions(t, listener)
	select {
	case <-hold.Held:
	case <-time.After(20 * time.Second):
		t.Fatal("the notifier did not reconnect within 20s")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if sub, err := pgnotify.Listen(ctx, pool, pgnotify.Params{Channel: channel(t, 1)}); err == nil {
		sub.Close()
		t.Fatal("Listen returned while the connection was being opened again")
	}
	close(hold.Release)
	sub := listen(t, pool, pgnotify.Params{Channel: channel(t, 1)})
	notify(t, pool, channel(t, 1), "")
	awaitWake(t, sub, "subscriber that listened after the reconnection")
	awaitWake(t, first, "subscriber from before the reconnection")
}
