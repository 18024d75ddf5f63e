package pgstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// A stream read (an aggregate's load, the first statement of a command)
// whose pooled connections were lost (the server restarted, an operator
// terminated the backends) is run again on a new connection instead of
// failing the command: a read changes nothing.
func TestReadStreamSurvivesLostConnections(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Append(ctx, "lost-1", es.NoStream, ev("Noted", `{}`)); err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	app := "strata-lost-" + hex.EncodeToString(b[:])
	pool := pgtest.NamedPool(t, app)
	reader := pgstore.New(pool, pgstore.Config{Schema: s.Schema()})
	// Every connection of the pool idle in it, then their backends
	// terminated, as a server restart would.
	var conns []*pgxpool.Conn
	for range pool.Stat().MaxConns() {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	pgtest.WaitForSessions(t, app, len(conns))
	pgtest.TerminateSessions(t, app)
	pgtest.WaitForSessions(t, app, 0)
	recs, err := reader.ReadStream(ctx, "lost-1", es.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Errorf("ReadStream after the pool's connections were lost: %d records, %v; want 1, nil", len(recs), err)
	}
}
