// Package shadow keeps what the sinks' verifications share about a shadow
// generation: its checkpoint, in memory since the shadow lives only as long
// as the verification, and the log as the shadow's worker sees it, ending at
// a position that [Log.Build] moves.
package shadow

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Log is a shadow generation's checkpoint and the end of its log. Its
// Checkpoint and SetState methods are those of a [projections.Sink]; a
// sink's Apply calls [Log.Check] before a batch and [Log.Advance] after.
type Log struct {
	mu      sync.Mutex
	cp      projections.Checkpoint
	events  int64
	until   es.Position
	end     *es.Position  // the last record at or before until, once the log past until was seen
	reached chan struct{} // closed when cp reaches until or end
}

// Check returns a [*projections.CheckpointMovedError] unless the checkpoint
// is where batch p starts.
func (l *Log) Check(p projections.ApplyParams) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cp.Position != p.From {
		return &projections.CheckpointMovedError{Projection: p.Projection, Expected: p.From, Actual: l.cp.Position}
	}
	return nil
}

// Advance moves the checkpoint past batch p, once it is applied.
func (l *Log) Advance(p projections.ApplyParams) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cp.Position = p.To
	l.events += int64(len(p.Events))
	if n := len(p.DeadLetters); n > 0 {
		f := p.DeadLetters[n-1].Failure
		l.cp.Failure = &f
	}
	l.check()
}

// Events returns how many events the shadow has applied.
func (l *Log) Events() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events
}

// Checkpoint implements [projections.Checkpoints].
func (l *Log) Checkpoint(_ context.Context, name string) (projections.Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp := l.cp
	cp.Name = name
	return cp, nil
}

// SetState implements [projections.Checkpoints].
func (l *Log) SetState(_ context.Context, _ string, state projections.State, f *projections.Failure) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cp.State = state
	if f != nil {
		l.cp.Failure = f
	}
	return nil
}

// check closes reached once the shadow is where it is to be; l.mu is held.
func (l *Log) check() {
	if l.reached == nil {
		return
	}
	if !l.cp.Position.Before(l.until) || (l.end != nil && !l.cp.Position.Before(*l.end)) {
		close(l.reached)
		l.reached = nil
	}
}

// passed records that the log goes on after until, and that last is the
// last record at or before it.
func (l *Log) passed(last es.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.end == nil || l.end.Before(last) {
		l.end = &last
	}
	l.check()
}

// Build runs run (the shadow's worker, reading [Log.Store]) until the shadow
// has applied the log up to until, or up to the head of the log when until
// is past it (a checkpoint moved past the head by a reset covers events that
// are not visible yet, which the live worker will not apply either). It
// calls tick with the shadow's checkpoint about every every, and once when
// done.
func (l *Log) Build(ctx context.Context, store es.Store, run func(context.Context) error, until es.Position, every time.Duration, tick func(at es.Position)) error {
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	if head.Before(until) {
		until = head
	}
	reached := make(chan struct{})
	l.mu.Lock()
	l.until, l.end, l.reached = until, nil, reached
	l.check()
	l.mu.Unlock()
	report := func() {
		l.mu.Lock()
		at := l.cp.Position
		l.mu.Unlock()
		tick(at)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(wctx) }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-reached:
			cancel()
			if err := <-done; err != nil {
				return err
			}
			report()
			return nil
		case err := <-done:
			if err == nil {
				err = context.Cause(ctx)
			}
			return err
		case <-t.C:
			report()
		}
	}
}

// Store returns store as the shadow's worker sees it: its subscriptions end
// at the position [Log.Build] runs to, and then wait until their context
// ends, like a caught-up subscription.
func (l *Log) Store(store es.Store) es.Store { return bounded{store, l} }

type bounded struct {
	es.Store
	l *Log
}

func (b bounded) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	return func(yield func([]es.Record, error) bool) {
		b.l.mu.Lock()
		until := b.l.until
		b.l.mu.Unlock()
		last := opts.After
		if last.Before(until) {
			for recs, err := range b.Store.Subscribe(ctx, opts) {
				if err != nil {
					yield(nil, err)
					return
				}
				n := 0
				for n < len(recs) && recs[n].Position.Compare(until) <= 0 {
					n++
				}
				if n > 0 {
					last = recs[n-1].Position
					if !yield(recs[:n], nil) {
						return
					}
				}
				if n < len(recs) {
					break
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		b.l.passed(last)
		<-ctx.Done()
	}
}
