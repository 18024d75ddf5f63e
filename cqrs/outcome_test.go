package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// unknownStore wraps a store: its first fail appends return an unknown
// outcome, after storing the events when stored is set, the way a
// connection that breaks during the commit leaves them. It records what
// every append asked for.
type unknownStore struct {
	es.Store
	fail   int
	stored bool
	onFail func() // called on each failed append, if set

	mu    sync.Mutex
	calls []appendCall
}

type appendCall struct {
	expected es.ExpectedVersion
	ids      []uuid.UUID
}

func (s *unknownStore) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	s.mu.Lock()
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	s.calls = append(s.calls, appendCall{expected: expected, ids: ids})
	fail := len(s.calls) <= s.fail
	s.mu.Unlock()
	if !fail {
		return s.Store.Append(ctx, stream, expected, events...)
	}
	if s.stored && len(s.calls) == 1 {
		if _, err := s.Store.Append(ctx, stream, expected, events...); err != nil {
			return es.AppendResult{}, err
		}
	}
	if s.onFail != nil {
		s.onFail()
	}
	return es.AppendResult{}, &es.UnknownOutcomeError{Stream: stream, Err: errors.New("the connection was reset")}
}

// TestUnknownOutcomeRetried: an append whose outcome is unknown is retried
// with the same event IDs at the same expected version, for commands with
// and without an ID, whether the first attempt was stored or not; the
// command is applied once and the dispatch succeeds.
func TestUnknownOutcomeRetried(t *testing.T) {
	t.Parallel()
	for _, stored := range []bool{false, true} {
		for _, id := range []string{"", "cmd-1"} {
			t.Run(fmt.Sprintf("stored=%v/id=%q", stored, id), func(t *testing.T) {
				t.Parallel()
				inner := memstore.New()
				newApp(inner, cqrs.AggregateConfig{}).mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
				store := &unknownStore{Store: inner, fail: 2, stored: stored}
				a := newApp(store, cqrs.AggregateConfig{})
				res, err := a.bus.Dispatch(t.Context(), AddItem{ID: id, OrderID: "1", SKU: "tea", Quantity: 1})
				if err != nil {
					t.Fatalf("dispatch: %v", err)
				}
				if res.Version != 2 {
					t.Errorf("result version %d; want 2", res.Version)
				}
				if got := strings.Join(types(read(t, inner, "order-1")), ","); got != "OrderPlaced,ItemAdded" {
					t.Fatalf("stream: %s; want OrderPlaced,ItemAdded", got)
				}
				if len(store.calls) != 3 {
					t.Fatalf("%d appends; want 3 (two unknown outcomes, then the retry that settles it)", len(store.calls))
				}
				for i, c := range store.calls[1:] {
					if c.expected != store.calls[0].expected || !slices.Equal(c.ids, store.calls[0].ids) {
						t.Errorf("retry %d appended %v at %s; want the first attempt's %v at %s", i+1, c.ids, c.expected, store.calls[0].ids, store.calls[0].expected)
					}
				}
				if store.calls[0].ids[0] == uuid.Nil {
					t.Errorf("the first attempt left the event ID to the store; a retry could not repeat it")
				}
			})
		}
	}
}

// TestUnknownOutcomeGivesUp: when every retry's outcome is unknown too,
// the dispatch fails with an error that says so.
func TestUnknownOutcomeGivesUp(t *testing.T) {
	t.Parallel()
	inner := memstore.New()
	newApp(inner, cqrs.AggregateConfig{}).mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})
	store := &unknownStore{Store: inner, fail: 100}
	a := newApp(store, cqrs.AggregateConfig{UnknownOutcomeRetries: 2})
	_, err := a.bus.Dispatch(t.Context(), AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
	if !errors.Is(err, es.ErrUnknownOutcome) {
		t.Fatalf("dispatch: %v; want an error wrapping es.ErrUnknownOutcome", err)
	}
	if len(store.calls) != 3 {
		t.Fatalf("%d appends; want 3 (the first and UnknownOutcomeRetries retries)", len(store.calls))
	}
	const want = "cqrs: handle cqrs_test.AddItem for order-1: still unknown after 2 retries: es: append to order-1: outcome unknown, it may or may not be stored: the connection was reset"
	if err.Error() != want {
		t.Errorf("error text:\n got %s\nwant %s", err, want)
	}

	// The context ends while the handler waits to retry: it stops, and
	// says both.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store = &unknownStore{Store: inner, fail: 100, onFail: cancel}
	a = newApp(store, cqrs.AggregateConfig{})
	_, err = a.bus.Dispatch(ctx, AddItem{OrderID: "1", SKU: "tea", Quantity: 1})
	if !errors.Is(err, es.ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("dispatch whose context ended: %v; want an error wrapping es.ErrUnknownOutcome and context.Canceled", err)
	}
	if len(store.calls) != 1 {
		t.Fatalf("%d appends after the context ended; want 1", len(store.calls))
	}
}

// TestUnknownOutcomeDuringCommit terminates the server process of an
// append while it commits, on real PostgreSQL: a deferred trigger on the
// events table makes the commit wait for an advisory lock that the test
// holds. Then
//
//   - not committed: the process is terminated while it waits, so the
//     commit fails; the client sees the connection end with a FATAL error;
//   - committed: a proxy between client and server stops passing the
//     server's answers, the lock is released so that the commit completes,
//     and then the process is terminated and the proxied connection cut;
//     the client never learns that its commit went through.
//
// Either way the dispatch succeeds and the command is applied exactly once.
func TestUnknownOutcomeDuringCommit(t *testing.T) {
	t.Parallel()
	for _, committed := range []bool{false, true} {
		for _, id := range []string{"", "cmd-1"} {
			t.Run(fmt.Sprintf("committed=%v/id=%q", committed, id), func(t *testing.T) {
				t.Parallel()
				testUnknownOutcomeDuringCommit(t, committed, id)
			})
		}
	}
}

func testUnknownOutcomeDuringCommit(t *testing.T, committed bool, commandID string) {
	ctx := t.Context()
	admin := pgtest.Admin(t)
	_, schema := pgtest.NewSchema(t)
	px := startProxy(t)
	appName := "outcome-" + uuid.NewString()[:8]
	pool := px.pool(t, appName)
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	a := newApp(store, cqrs.AggregateConfig{})
	a.mustDispatch(t, PlaceOrder{OrderID: "1", Customer: "ann"})

	// The commit of an ItemAdded waits for lockKey while the test holds it.
	lockKey := int64(uuid.New().ID())
	sc := pgx.Identifier{schema}.Sanitize()
	if _, err := admin.Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION %[1]s.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_catalog.pg_advisory_xact_lock_shared(%[2]d);
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON %[1]s.events
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (NEW.type = 'ItemAdded') EXECUTE FUNCTION %[1]s.hold_commit()`, sc, lockKey)); err != nil {
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

	type outcome struct {
		res cqrs.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.bus.Dispatch(ctx, AddItem{ID: commandID, OrderID: "1", SKU: "tea", Quantity: 1})
		done <- outcome{res, err}
	}()

	// The appending server process, waiting in its commit.
	var pid int32
	waitFor(t, func() bool {
		err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, appName).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return err == nil
	})

	countAdded := func() int {
		var n int
		if err := admin.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.events WHERE stream_id = 'order-1' AND type = 'ItemAdded'`, sc)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	terminate := func() {
		var ok bool
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate the appending server process %d: %v, %v", pid, ok, err)
		}
	}
	if committed {
		px.mute()
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return countAdded() == 1 })
		terminate()
		px.cut()
	} else {
		terminate()
		if n := countAdded(); n != 0 {
			t.Fatalf("%d ItemAdded events stored after the commit was terminated; want 0", n)
		}
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			t.Fatal(err)
		}
	}

	var got outcome
	select {
	case got = <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("the dispatch did not return in %v", waitTimeout)
	}
	if got.err != nil {
		t.Fatalf("dispatch: %v; want success, retried with the same event IDs", got.err)
	}
	if got.res.Version != 2 {
		t.Errorf("result version %d; want 2", got.res.Version)
	}
	if n := countAdded(); n != 1 {
		t.Fatalf("%d ItemAdded events stored; want exactly 1", n)
	}
	if got := strings.Join(types(read(t, store, "order-1")), ","); got != "OrderPlaced,ItemAdded" {
		t.Fatalf("stream: %s; want OrderPlaced,ItemAdded", got)
	}
}

// waitTimeout bounds the waits of these tests.
const waitTimeout = 60 * time.Second

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", waitTimeout)
		}
		<-tick.C
	}
}

// proxy passes TCP connections through to the test server. mute makes the
// connections open at the time drop what the server sends them; cut closes
// those. Connections made later pass through normally.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*proxied
}

type proxied struct {
	client, server net.Conn
	muted          atomic.Bool
}

func startProxy(t *testing.T) *proxy {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(cfg.ConnConfig.Host, "/") {
		t.Skip("the test server is reached through a Unix socket; the proxy speaks TCP")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.close()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxied{client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Go(func() {
			_, _ = io.Copy(server, client)
			server.Close()
		})
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && !c.muted.Load() {
					if _, werr := client.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			client.Close()
		})
	}
}

func (p *proxy) mute() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.muted.Store(true)
	}
}

// cut closes the muted connections.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = slices.DeleteFunc(p.conns, func(c *proxied) bool {
		if c.muted.Load() {
			c.client.Close()
			c.server.Close()
			return true
		}
		return false
	})
}

// close closes every connection.
func (p *proxy) close() {
	p.mute()
	p.cut()
}

// pool returns a pool of one connection through the proxy, whose server
// processes show appName in pg_stat_activity.
func (p *proxy) pool(t *testing.T, appName string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	cfg.ConnConfig.Host = host
	fmt.Sscan(port, &cfg.ConnConfig.Port)
	cfg.ConnConfig.Fallbacks = nil
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
