package pgsink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections"
)

// Leases are session-level advisory locks, each held on a connection of its
// own for as long as the worker runs. PostgreSQL releases the lock the
// moment that connection ends, for whatever reason (the process exits or
// crashes, the network drops and TCP keepalive gives up, an operator
// terminates the backend), so there is no expiry to tune and no clock to
// trust; a standby's next TryLock succeeds. The checkpoint guard in Apply
// keeps a batch from being applied twice even while a holder that lost its
// lock has not noticed yet.

func (s *Sink) leaseKey(name string) string {
	return "strata/projections/" + s.cfg.Schema + "/" + name
}

// TryLock implements [projections.Locker].
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	app := "strata lease " + name
	if len(app) > 63 {
		app = app[:63]
	}
	cfg.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("pgsink: lease of %s: connect: %w", name, err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0))`,
		s.leaseKey(name)).Scan(&got); err != nil {
		closeConn(conn)
		return nil, false, fmt.Errorf("pgsink: lease of %s: %w", name, err)
	}
	if !got {
		closeConn(conn)
		return nil, false, nil
	}
	l := &lease{conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
	l.wg.Go(func() { l.watch(s.cfg.LeaseCheck) })
	return l, true, nil
}

// LeaseHolder returns the backend process ID of the connection that holds
// the lease of a projection, if one does.
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

type lease struct {
	conn     *pgx.Conn
	lost     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

// watch pings the lease connection until it fails or the lease is
// released (then it unlocks), and then closes it.
func (l *lease) watch(every time.Duration) {
	defer close(l.lost)
	defer closeConn(l.conn)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			// Unlock before closing: a closed connection's backend gives its
			// locks up only when it notices, so a TryLock right after
			// Release could still find the lock taken.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = l.conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_unlock_all()`)
			cancel()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every+5*time.Second)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}

func (l *lease) Release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	return nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
