package pgsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections"
)

// Leases are session-level advisory locks. A sink holds all of its leases
// on one connection of its own, the lease connection, opened outside the
// pool by the first TryLock that wins and closed when the last lease is
// released, so a sink that holds no lease holds no connection. Its
// application_name is the pool's followed by " leases" (see leaseAppName),
// and [Sink.LeaseHolder] returns its backend's process ID. PostgreSQL
// releases the locks the moment that connection ends, for whatever reason
// (the process exits or crashes, the network drops and TCP keepalive gives
// up, an operator terminates the backend), so there is no expiry to tune and
// no clock to trust; a standby's next TryLock succeeds. The checkpoint guard
// in Apply keeps a batch from being applied twice even while a holder that
// lost its lock has not noticed yet.
//
// A process therefore uses the pool's connections, one listening connection
// per pool (see watch.go) and one lease connection per sink while the sink
// holds leases, however many projections it runs.
//
// Advisory locks are re-entrant within a session, so the sink keeps the
// leases it holds and refuses a second TryLock of one of them: two workers
// of a projection in one process take turns like workers in two. While the
// sink has no lease connection, a TryLock first asks on the pool whether
// someone holds the lock, so that a standby does not connect only to be
// refused. One goroutine per lease connection pings it every
// Config.LeaseCheck; when a ping or any statement on it fails, every lease
// held on it is lost at once and the connection is closed.

// leaseStatementTimeout bounds every statement on a lease connection, and
// its connection: a statement that takes longer loses the connection.
const leaseStatementTimeout = 5 * time.Second

// leases is a sink's lease connection and the leases held on it.
type leases struct {
	// mu guards the fields below and the connection: a pgx.Conn is not
	// safe for concurrent use. Every statement run under mu is bounded.
	mu   sync.Mutex
	conn *leaseConn
	held map[string]*lease // by projection name
}

// leaseConn is a lease connection and its watcher.
type leaseConn struct {
	conn *pgx.Conn
	stop chan struct{} // closed when the connection is dropped
	done chan struct{} // closed when the watcher has returned
}

type lease struct {
	sink *Sink
	name string
	conn *leaseConn
	lost chan struct{} // closed when the lease leaves sink.leases.held
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (s *Sink) leaseKey(name string) string {
	return "strata/projections/" + s.cfg.Schema + "/" + name
}

// leaseAppName is the application_name of the lease connection of a sink
// whose pool's connections have application_name app: app + " leases", or
// "strata leases" when app is empty, with app cut short to keep the whole
// within PostgreSQL's 63 bytes.
func leaseAppName(app string) string {
	const suffix = " leases"
	if app == "" {
		app = "strata"
	}
	if limit := 63 - len(suffix); len(app) > limit {
		app = app[:limit]
		for !utf8.ValidString(app) {
			app = app[:len(app)-1]
		}
	}
	return app + suffix
}

// TryLock implements [projections.Locker]. It returns false, without
// asking the server, when the sink holds the lease already.
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	ls := &s.leases
	ls.mu.Lock()
	_, mine := ls.held[name]
	connected := ls.conn != nil
	ls.mu.Unlock()
	if mine {
		return nil, false, nil
	}
	if !connected {
		// Do not connect only to be refused. Someone may take or give up
		// the lock after this look: pg_try_advisory_lock decides.
		_, taken, err := s.LeaseHolder(ctx, name)
		if err != nil || taken {
			return nil, false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("pgsink: lease of %s: %w", name, err)
	}

	ls.mu.Lock()
	l, got, dropped, err := s.tryLockLocked(ctx, name)
	ls.mu.Unlock()
	if dropped != nil {
		<-dropped.done
	}
	if err != nil {
		return nil, false, fmt.Errorf("pgsink: lease of %s: %w", name, err)
	}
	return l, got, nil
}

// tryLockLocked is TryLock with s.leases.mu held. It returns the lease
// connection it dropped, if it did, whose watcher the caller waits for
// once it has unlocked mu.
func (s *Sink) tryLockLocked(ctx context.Context, name string) (_ *lease, got bool, dropped *leaseConn, _ error) {
	ls := &s.leases
	if _, mine := ls.held[name]; mine {
		return nil, false, nil, nil
	}
	if ls.conn == nil {
		c, err := s.connectLeases(ctx)
		if err != nil {
			return nil, false, nil, fmt.Errorf("connect: %w", err)
		}
		ls.conn = c
		ls.held = map[string]*lease{}
		go s.watchLeases(c)
	}
	c := ls.conn
	// Not ctx: a statement cancelled half-way breaks the connection, and
	// with it every other lease on it.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseStatementTimeout)
	defer cancel()
	err := c.conn.QueryRow(qctx, `SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0))`,
		s.leaseKey(name)).Scan(&got)
	if err != nil {
		s.dropLeases()
		return nil, false, c, err
	}
	if !got {
		if len(ls.held) == 0 {
			s.dropLeases()
			return nil, false, c, nil
		}
		return nil, false, nil, nil
	}
	l := &lease{sink: s, name: name, conn: c, lost: make(chan struct{})}
	ls.held[name] = l
	return l, true, nil, nil
}

// Release implements [projections.Lease]: it unlocks the lease on the lease
// connection before it returns, so a TryLock anywhere right after succeeds,
// and closes that connection when the sink holds no other lease.
func (l *lease) Release(ctx context.Context) error {
	s, ls := l.sink, &l.sink.leases
	ls.mu.Lock()
	if ls.held[l.name] != l {
		ls.mu.Unlock()
		return nil // released already, or lost
	}
	delete(ls.held, l.name)
	close(l.lost)
	var err error
	if len(ls.held) == 0 {
		// Closing the connection would unlock too, but its backend gives
		// its locks up only when it notices: unlock first.
		err = s.unlockLease(ctx, l.name)
		s.dropLeases()
	} else if err = s.unlockLease(ctx, l.name); err != nil {
		s.dropLeases()
	}
	dropped := ls.conn != l.conn
	ls.mu.Unlock()
	if dropped {
		<-l.conn.done
	}
	if err != nil {
		return fmt.Errorf("pgsink: release lease of %s: %w", l.name, err)
	}
	return nil
}

// unlockLease unlocks the lease of name on the lease connection; s.leases.mu
// is held.
func (s *Sink) unlockLease(ctx context.Context, name string) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseStatementTimeout)
	defer cancel()
	var unlocked bool
	err := s.leases.conn.conn.QueryRow(qctx, `SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended($1, 0))`,
		s.leaseKey(name)).Scan(&unlocked)
	if err == nil && !unlocked {
		err = errors.New("the lease connection did not hold the lock")
	}
	return err
}

// dropLeases closes the lease connection, which loses every lease still
// held on it, and stops its watcher; s.leases.mu is held.
func (s *Sink) dropLeases() {
	ls := &s.leases
	for name, l := range ls.held {
		delete(ls.held, name)
		close(l.lost)
	}
	c := ls.conn
	ls.conn = nil
	close(c.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.conn.Close(ctx)
}

// watchLeases pings the lease connection c every Config.LeaseCheck until it
// is dropped, and drops it when a ping fails.
func (s *Sink) watchLeases(c *leaseConn) {
	defer close(c.done)
	t := time.NewTicker(s.cfg.LeaseCheck)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if !s.pingLeases(c) {
			return
		}
	}
}

// pingLeases pings c, and drops it when the ping fails. It reports whether
// c is still the lease connection.
func (s *Sink) pingLeases(c *leaseConn) bool {
	ls := &s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.conn != c {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseStatementTimeout)
	defer cancel()
	if err := c.conn.Ping(ctx); err != nil {
		s.cfg.Logger.Warn("pgsink: lease connection lost; every lease on it is lost",
			slog.Int("leases", len(ls.held)), slog.Any("error", err))
		s.dropLeases()
		return false
	}
	return true
}

func (s *Sink) connectLeases(ctx context.Context) (*leaseConn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = leaseAppName(cfg.RuntimeParams["application_name"])
	cctx, cancel := context.WithTimeout(ctx, leaseStatementTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	return &leaseConn{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// LeaseHolder returns the backend process ID of the connection that holds
// the lease of a projection, if one does: the lease connection of the sink
// that holds it.
func (s *Sink) LeaseHolder(ctx context.Context, name string) (pid int, held bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT l.pid FROM pg_catalog.pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = pg_catalog.hashtextextended($1, 0)
		LIMIT 1`, s.leaseKey(name)).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pgsink: lease holder of %s: %w", name, err)
	}
	return pid, true, nil
}
