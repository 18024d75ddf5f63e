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

// A read whose pooled connections were lost (the server restarted, an
// operator terminated the backends) is run again on a new connection
// instead of failing the caller: a read changes nothing.
func TestReadsSurviveALostConnection(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	res, err := s.Append(ctx, "lost-1", es.NoStream, ev("Noted", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	app := "strata-lost-" + hex.EncodeToString(b[:])
	pool := pgtest.NamedPool(t, app)
	reader := pgstore.New(pool, pgstore.Config{Schema: s.Schema()})
	for _, read := range []struct {
		name string
		do   func() error
	}{
		{"ReadStream", func() error {
			recs, err := reader.ReadStream(ctx, "lost-1", es.ReadStreamOptions{})
			if err == nil && len(recs) != 1 {
				t.Errorf("ReadStream: %d records, want 1", len(recs))
			}
			return err
		}},
		{"ReadAll", func() error {
			recs, err := reader.ReadAll(ctx, es.Start, 10)
			if err == nil && len(recs) > 0 && recs[0].Position != res.Position {
				t.Errorf("ReadAll: first record at %s, want %s", recs[0].Position, res.Position)
			}
			return err
		}},
	} {
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
		if err := read.do(); err != nil {
			t.Errorf("%s after the connection was lost: %v", read.name, err)
		}
	}
}
