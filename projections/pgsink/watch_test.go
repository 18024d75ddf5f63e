package pgsink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/pgsink"
)

// listenerSink returns a migrated store and sink in a schema of their own,
// on a pool of their own (see [pgtest.ListenerPool]), and the application
// name of the pool's listening connection.
func listenerSink(t *testing.T, hold *pgtest.ListenerHold) (*pgstore.Store, *pgsink.Sink, string) {
	t.Helper()
	_, schema := pgtest.NewSchema(t)
	pool, listener := pgtest.ListenerPool(t, hold)
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, PollInterval: time.Hour})
	if _, err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := sink.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return store, sink, listener
}

type watcher struct {
	name    string
	changed <-chan struct{}
}

func watch(t *testing.T, sink *pgsink.Sink, name string) watcher {
	t.Helper()
	changed, stop, err := sink.WatchCheckpoint(t.Context(), name)
	if err != nil {
		t.Fatalf("watch %s: %v", name, err)
	}
	t.Cleanup(stop)
	return watcher{name, changed}
}

func (w watcher) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-w.changed:
	case <-time.After(20 * time.Second):
		t.Fatalf("watcher of %s not signalled %s within 20s", w.name, what)
	}
}

func reset(t *testing.T, sink *pgsink.Sink, name string) {
	t.Helper()
	if err := sink.Reset(t.Context(), name, es.Position{Commit: 1, Prepare: 1}); err != nil {
		t.Fatalf("reset %s: %v", name, err)
	}
}

// Twenty checkpoint watchers and a store subscription on one pool listen on
// one connection; each watcher is signalled by its projection's changes
// only; the connection is closed when the last stops.
func TestWatchersShareOneListeningConnection(t *testing.T) {
	t.Parallel()
	store, sink, listener := listenerSink(t, nil)
	// Cleanups run last-in first-out: this one after the watchers stop.
	t.Cleanup(func() { pgtest.WaitForSessions(t, listener, 0) })
	watchers := make([]watcher, 20)
	for i := range watchers {
		watchers[i] = watch(t, sink, fmt.Sprintf("p%d", i))
	}
	events := make(chan []es.Record, 1)
	subDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(subDone)
		for recs, err := range store.Subscribe(ctx, es.SubscribeOptions{}) {
			if err != nil {
				return
			}
			events <- recs
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-subDone
	})
	// The subscription listens once caught up after a, before it reads b.
	for _, stream := range []string{"a", "b"} {
		if _, err := store.Append(t.Context(), stream, es.Any, es.EventData{Type: "T", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-events:
		case <-time.After(20 * time.Second):
			t.Fatalf("subscription did not deliver the event of %s within 20s", stream)
		}
	}
	if n := pgtest.Sessions(t, listener); n != 1 {
		t.Errorf("listening connections for %d watchers and a subscription: %d; want 1", len(watchers), n)
	}
	for i, w := range watchers {
		reset(t, sink, w.name)
		w.await(t, "by its checkpoint's change")
		// Notifications arrive in commit order on the one connection.
		for _, other := range watchers[:i] {
			if len(other.changed) != 0 {
				t.Errorf("watcher of %s signalled by the change of %s", other.name, w.name)
			}
		}
	}
}

// A checkpoint that changes while the listening connection is down
// signals its watcher once the connection is back.
func TestWatchAfterListenerTerminated(t *testing.T) {
	t.Parallel()
	hold := &pgtest.ListenerHold{Held: make(chan struct{}, 1), Release: make(chan struct{})}
	_, sink, listener := listenerSink(t, hold)
	w := watch(t, sink, "p")
	pgtest.TerminateSessions(t, listener)
	select {
	case <-hold.Held:
	case <-time.After(20 * time.Second):
		t.Fatal("the listening connection was not opened again within 20s")
	}
	reset(t, sink, "p") // nobody listens now
	if len(w.changed) != 0 {
		t.Fatal("watcher signalled while the listening connection was down")
	}
	close(hold.Release)
	w.await(t, "after the reconnection")
	reset(t, sink, "p")
	w.await(t, "by a change after the reconnection")
}
