// Package memsink is an in-memory [projections.Sink] for unit tests and
// examples. Its read model is a set of tables of rows keyed by string; a
// handler stages writes in a [*Tx], and they take effect together with the
// checkpoint, or not at all.
package memsink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/stratadev/strata/projections"
)

// Sink is an in-memory sink. The zero value is not usable; call [New].
type Sink struct {
	mu     sync.Mutex
	tables map[string]map[string]any
	cps    map[string]projections.Checkpoint
	dead   []projections.DeadLetter
	leases map[string]*lease
	watch  map[chan struct{}]string // watchers of a projection's checkpoint
}

var (
	_ projections.Sink[*Tx]         = (*Sink)(nil)
	_ projections.Locker            = (*Sink)(nil)
	_ projections.CheckpointWatcher = (*Sink)(nil)
)

// New returns an empty sink.
func New() *Sink {
	return &Sink{
		tables: map[string]map[string]any{},
		cps:    map[string]projections.Checkpoint{},
		leases: map[string]*lease{},
		watch:  map[chan struct{}]string{},
	}
}

// Tx stages the writes of one batch.
type Tx struct {
	s      *Sink
	writes []write
}

type write struct {
	table, key string
	value      any
	del        bool
}

// Put sets the row key of table to value.
func (tx *Tx) Put(table, key string, value any) {
	tx.writes = append(tx.writes, write{table: table, key: key, value: value})
}

// Delete removes the row key of table.
func (tx *Tx) Delete(table, key string) {
	tx.writes = append(tx.writes, write{table: table, key: key, del: true})
}

// Get returns the row key of table as the batch sees it: with its own
// staged writes.
func (tx *Tx) Get(table, key string) (any, bool) {
	for i := len(tx.writes) - 1; i >= 0; i-- {
		if w := tx.writes[i]; w.table == table && w.key == key {
			return w.value, !w.del
		}
	}
	v, ok := tx.s.tables[table][key] // Apply holds s.mu
	return v, ok
}

// Apply implements [projections.Sink]. Batches are serialized.
func (s *Sink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.checkpoint(p.Projection)
	if cp.Position != p.From {
		return &projections.CheckpointMovedError{Projection: p.Projection, Expected: p.From, Actual: cp.Position}
	}
	if cp.State == projections.StatePaused {
		return fmt.Errorf("memsink: apply to %s: %w", p.Projection, projections.ErrPaused)
	}
	tx := &Tx{s: s}
	if len(p.Events) > 0 {
		if err := handle(ctx, tx); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, w := range tx.writes {
		t := s.tables[w.table]
		if t == nil {
			t = map[string]any{}
			s.tables[w.table] = t
		}
		if w.del {
			delete(t, w.key)
		} else {
			t[w.key] = w.value
		}
	}
	for _, d := range p.DeadLetters {
		s.dead = append(s.dead, d)
		f := d.Failure
		cp.Failure = &f
	}
	cp.Position = p.To
	cp.UpdatedAt = time.Now().UTC()
	s.setCheckpoint(cp)
	return nil
}

// Transient implements [projections.Sink]: nothing in memory is.
func (s *Sink) Transient(error) bool { return false }

func (s *Sink) checkpoint(name string) projections.Checkpoint {
	cp, ok := s.cps[name]
	if !ok {
		cp = projections.Checkpoint{Name: name, State: projections.StateRunning}
	}
	return cp
}

func (s *Sink) setCheckpoint(cp projections.Checkpoint) {
	s.cps[cp.Name] = cp
	for ch, name := range s.watch {
		if name == cp.Name {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// Checkpoint implements [projections.Checkpoints].
func (s *Sink) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return projections.Checkpoint{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoint(name), nil
}

// SetState implements [projections.Checkpoints].
func (s *Sink) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.checkpoint(name)
	cp.State = state
	switch {
	case f != nil:
		c := *f
		cp.Failure = &c
	case state == projections.StateRunning:
		cp.Failure = nil
	}
	cp.UpdatedAt = time.Now().UTC()
	s.setCheckpoint(cp)
	return nil
}

// WatchCheckpoint implements [projections.CheckpointWatcher].
func (s *Sink) WatchCheckpoint(_ context.Context, name string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watch[ch] = name
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watch, ch)
		s.mu.Unlock()
	}, nil
}

// Rows returns a copy of table.
func (s *Sink) Rows(table string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.tables[table])
}

// DeadLetters returns the parked events.
func (s *Sink) DeadLetters() []projections.DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]projections.DeadLetter(nil), s.dead...)
}

// TryLock implements [projections.Locker] within the process.
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases[name] != nil {
		return nil, false, nil
	}
	l := &lease{s: s, name: name, lost: make(chan struct{})}
	s.leases[name] = l
	return l, true, nil
}

// Revoke takes the lease of a projection from its holder, as if its
// process had died.
func (s *Sink) Revoke(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[name]
	if l == nil {
		return errors.New("memsink: revoke: no one holds the lease of " + name)
	}
	delete(s.leases, name)
	close(l.lost)
	return nil
}

type lease struct {
	s    *Sink
	name string
	lost chan struct{}
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Release(context.Context) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.leases[l.name] == l {
		delete(l.s.leases, l.name)
		close(l.lost)
	}
	return nil
}
