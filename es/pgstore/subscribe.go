package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/stratadev/strata/es"
)

// Backoff while appends are in flight, or committed events are held back by
// a running transaction: an append may not notify (see notify.go), and a
// holder that rolls back sends no notification, so the subscription looks
// again soon instead of waiting a whole poll interval.
const (
	heldBackoffMin = 5 * time.Millisecond
	heldBackoffMax = 100 * time.Millisecond
)

// Subscribe implements [es.Store]. It catches up with ReadAll pages, then
// waits on a connection of its own that listens to the store's channel, which
// appends notify on commit. It also looks for new events every PollInterval,
// and every few milliseconds while appends are in flight or committed events
// are held back by a running transaction. It starts no goroutine: all waiting
// happens inside the iteration, and the listening connection is closed when
// the iteration ends.
//
// The listening connection is opened with the pool's connection settings but
// outside the pool, so each live subscription uses one server connection
// beyond the pool's limit.
func (s *Store) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	batch := opts.BatchSize
	if batch <= 0 {
		batch = es.BatchSizeDefault
	}
	return func(yield func([]es.Record, error) bool) {
		sub := subscription{store: s, after: opts.After, batch: batch}
		defer sub.close()
		sub.run(ctx, yield)
	}
}

type subscription struct {
	store    *Store
	after    es.Position
	batch    int
	listener *pgx.Conn
	backoff  time.Duration
}

func (sub *subscription) run(ctx context.Context, yield func([]es.Record, error) bool) {
	s := sub.store
	for {
		recs, err := s.ReadAll(ctx, sub.after, sub.batch)
		if err != nil {
			if ctx.Err() == nil {
				yield(nil, sub.failure(err))
			}
			return
		}
		if len(recs) > 0 {
			sub.after = recs[len(recs)-1].Position
			if !yield(recs, nil) {
				return
			}
			if len(recs) == sub.batch {
				continue // more may be waiting
			}
		}
		// Caught up with what is visible now.
		if sub.listener == nil {
			if err := sub.listen(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				// Polling still works; try to listen again next time.
				s.cfg.Logger.WarnContext(ctx, "pgstore: subscription cannot listen for notifications; polling",
					slog.String("channel", s.channel), slog.Any("error", err))
			} else {
				continue // read again: an event may have committed before LISTEN
			}
		}
		idle, err := s.appendsIdle(ctx, sub.after.Commit, clampInt64(sub.after.Prepare))
		if err != nil {
			if ctx.Err() == nil {
				yield(nil, sub.failure(fmt.Errorf("check for appends in flight: %w", err)))
			}
			return
		}
		wait := s.cfg.PollInterval
		if !idle {
			sub.backoff = min(max(2*sub.backoff, heldBackoffMin), heldBackoffMax)
			wait = sub.backoff
		} else {
			sub.backoff = 0
		}
		if !sub.wait(ctx, wait) {
			return
		}
	}
}

// failure is the error a subscription ends with: a broken connection in
// plain words, anything else as the failed operation said it, each with
// "pgstore: " once.
func (sub *subscription) failure(err error) error {
	if brokeConn(err) {
		return fmt.Errorf("pgstore: subscribe after %s: %w", sub.after, &connError{err})
	}
	return &prefixed{prefix: "pgstore: subscribe: ", err: err}
}

// listen opens the subscription's own connection, with the pool's
// connection settings, and listens to the store's channel on it.
func (sub *subscription) listen(ctx context.Context) error {
	cfg := sub.store.pool.Config().ConnConfig.Copy()
	// Waiting with a deadline is how the subscription polls; a timeout must
	// not send a cancel request to the server each time.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	// First tell appends that a subscriber listens (see notify.go): this
	// waits for the appends in flight that decided not to notify, whose
	// events the next read sees. Then listen.
	if _, err := conn.Exec(ctx, sub.store.q.listening); err != nil {
		closeConn(conn)
		return err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{sub.store.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return err
	}
	sub.listener = conn
	return nil
}

// wait returns when a notification arrives or d has passed, and reports
// false when ctx has ended.
func (sub *subscription) wait(ctx context.Context, d time.Duration) bool {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if sub.listener == nil {
		<-wctx.Done()
		return ctx.Err() == nil
	}
	_, err := sub.listener.WaitForNotification(wctx)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		return false
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return true // poll
	}
	// The listening connection broke. Reads will tell whether the server is
	// gone; listen again when caught up.
	sub.store.cfg.Logger.WarnContext(ctx, "pgstore: subscription lost its listening connection",
		slog.String("channel", sub.store.channel), slog.Any("error", err))
	closeConn(sub.listener)
	sub.listener = nil
	return true
}

func (sub *subscription) close() {
	if sub.listener != nil {
		closeConn(sub.listener)
		sub.listener = nil
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
