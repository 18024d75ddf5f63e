package esdbstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
)

// Subscribe implements [es.Store] with a catch-up subscription to $all that
// the server filters: by stream prefix with a [Config.Namespace], otherwise
// excluding system event types. Events arrive one by one; the sequence
// yields what has arrived, up to the batch size, without waiting for more.
//
// When the subscription drops (the server restarts, the network fails) it
// re-subscribes after the position of the last event it yielded, waiting
// [Config.ReconnectMin], doubling up to [Config.ReconnectMax] between
// attempts, so the consumer sees no gap and no event twice. It yields the
// error once it has failed to re-subscribe for [Config.ReconnectTimeout],
// or at once for errors that waiting does not mend (access denied).
func (s *Store) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	size := opts.BatchSize
	if size <= 0 {
		size = es.BatchSizeDefault
	}
	return func(yield func([]es.Record, error) bool) {
		after := opts.After
		wait := s.cfg.ReconnectMin
		var down time.Time // when the subscription last dropped, while it is down
		for ctx.Err() == nil {
			sub, err := s.subscribe(ctx, after)
			if err == nil {
				var delivered, stop bool
				delivered, stop, err = s.pump(ctx, sub, &after, size, yield)
				if stop || ctx.Err() != nil {
					return
				}
				if delivered {
					wait, down = s.cfg.ReconnectMin, time.Time{}
				}
			}
			if ctx.Err() != nil {
				return
			}
			if down.IsZero() {
				down = time.Now()
			}
			if !retryable(err) || time.Since(down) > s.cfg.ReconnectTimeout {
				yield(nil, fmt.Errorf("esdbstore: subscribe to $all after %s: %w", after, err))
				return
			}
			s.cfg.Logger.WarnContext(ctx, "esdbstore: subscription dropped; re-subscribing",
				slog.String("after", after.String()), slog.Duration("wait", wait), slog.Any("error", err))
			if !backoff.Sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, s.cfg.ReconnectMax)
		}
	}
}

func (s *Store) subscribe(ctx context.Context, after es.Position) (*esdb.Subscription, error) {
	o := esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: esdb.ExcludeSystemEventsFilter()}
	if !after.IsZero() {
		o.From = esdb.Position{Commit: after.Commit, Prepare: after.Prepare}
	}
	if s.ns != "" {
		o.Filter = &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.ns}}
	}
	sub, err := s.client_().SubscribeToAll(ctx, o)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return sub, nil
}

// retryable reports whether re-subscribing may mend err.
func retryable(err error) bool {
	var e *esdb.Error
	if !errors.As(err, &e) {
		return true // transport errors of a dropped subscription
	}
	switch e.Code() {
	case esdb.ErrorCodeAccessDenied, esdb.ErrorCodeUnauthenticated, esdb.ErrorCodeUnsupportedFeature, esdb.ErrorCodeStreamDeleted:
		return false
	}
	return true
}

type arrival struct {
	event *esdb.ResolvedEvent
	err   error
}

// pump yields the events of sub in batches until the subscription drops
// (it returns the cause), the consumer stops or ctx ends (stop is true). It
// advances *after past every event it yields and reports whether it
// yielded any.
func (s *Store) pump(ctx context.Context, sub *esdb.Subscription, after *es.Position, size int, yield func([]es.Record, error) bool) (delivered, stop bool, err error) {
	arrivals := make(chan arrival, size)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			e := sub.Recv()
			var a arrival
			switch {
			case e.EventAppeared != nil:
				a.event = e.EventAppeared
			case e.SubscriptionDropped != nil:
				a.err = e.SubscriptionDropped.Error
				if a.err == nil {
					a.err = errors.New("subscription dropped")
				}
			default:
				continue // checkpoints, caught up, fell behind
			}
			select {
			case arrivals <- a:
			case <-done:
				return
			}
			if a.err != nil {
				return
			}
		}
	})
	defer func() {
		close(done)
		sub.Close()
		wg.Wait()
	}()

	for {
		var a arrival
		select {
		case <-ctx.Done():
			return delivered, true, nil
		case a = <-arrivals:
		}
		var batch []es.Record
		var dropped error
	drain:
		for {
			if a.err != nil {
				dropped = a.err
				break
			}
			if r := a.event.Event; s.visible(r) {
				rec := s.record(r)
				if after.Before(rec.Position) { // never twice, whatever the server resends
					batch = append(batch, rec)
				}
			}
			if len(batch) == size {
				break
			}
			select {
			case a = <-arrivals:
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			if !yield(batch, nil) {
				return delivered, true, nil
			}
			delivered = true
			*after = batch[len(batch)-1].Position
		}
		if dropped != nil {
			return delivered, false, dropped
		}
	}
}
