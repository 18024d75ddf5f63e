package pgstore

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgnotify"
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
// waits for a notification on the store's channel, which appends send on
// commit. It also looks for new events every PollInterval, and every few
// milliseconds while appends are in flight or committed events are held back
// by a running transaction. It starts no goroutine of its own: all waiting
// happens inside the iteration.
//
// All subscriptions and checkpoint watchers (projections/pgsink) on one pool
// share one listening connection, opened with the pool's connection
// settings but outside the pool when the first starts listening, and closed
// when the last stops: a process uses one server connection beyond the
// pool's limit for each pool it subscribes with, however many subscriptions
// it runs. When that connection breaks it is opened again, and every
// subscription reads again, since notifications may have been missed.
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
	listener *pgnotify.Subscription
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
			s.metrics.subPages.Add(ctx, 1)
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
		waited := time.Now()
		ok := sub.wait(ctx, wait)
		if !idle {
			s.metrics.heldBack.Add(ctx, time.Since(waited).Seconds())
		}
		if !ok {
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

// listen registers the subscription on the pool's listening connection
// and returns once that listens to the store's channel. Before the first
// subscriber of the store listens, the connection tells appends that a
// subscriber listens (see notify.go): this waits for the appends in flight
// that decided not to notify, whose events the next read sees.
func (sub *subscription) listen(ctx context.Context) error {
	s := sub.store
	l, err := pgnotify.Listen(ctx, s.pool, pgnotify.Params{
		Channel: s.channel, Setup: s.q.listening, Teardown: s.q.unlistening, Logger: s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	sub.listener = l
	return nil
}

// wait returns when a notification arrives or d has passed, and reports
// false when ctx has ended.
func (sub *subscription) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var woken <-chan struct{}
	if sub.listener != nil {
		woken = sub.listener.C()
	}
	select {
	case <-woken:
		return true
	case <-t.C:
		return true // poll
	case <-ctx.Done():
		return false
	}
}

func (sub *subscription) close() {
	if sub.listener != nil {
		sub.listener.Close()
		sub.listener = nil
	}
}
