// Package memstore is an in-memory [es.Store] and [es.SnapshotStore] for unit
// tests and examples. It keeps the exact semantics the es package documents
// and passes the conformance suite in es/estest, so code tested against it
// behaves the same on a real backend.
//
// Appends are serialized by one lock, so events become visible in position
// order the moment [Store.Append] returns: record number n of the log has
// position {Commit: n, Prepare: n}, counting from 1. Everything lives in the
// process and is lost when the [Store] is dropped. The store counts the
// events between two positions exactly ([Store.CountEvents], an
// [es.Counter]) and checks the sizes of [Config], with pgstore's defaults.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"iter"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// Defaults of [Config]: those of pgstore, so that code tested on memstore
// meets the limits of the PostgreSQL store.
const (
	MaxEventSizeDefault  = 8 << 20
	MaxAppendSizeDefault = 64 << 20
)

// Config tunes a [Store]. The zero value works.
type Config struct {
	// MaxEventSize is the largest event an append may carry, in bytes as
	// [es.EventSize] measures them. Defaults to 8 MiB.
	MaxEventSize int
	// MaxAppendSize is the most bytes one append may carry, all its events
	// together. Defaults to 64 MiB.
	MaxAppendSize int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	return es.SizeLimits{MaxEventSize: c.MaxEventSize, MaxAppendSize: c.MaxAppendSize}.Validate("memstore: Config")
}

// Store is an in-memory event store. The zero value is not usable; call
// [New]. A Store is safe for concurrent use.
type Store struct {
	limits  es.SizeLimits
	mu      sync.RWMutex
	log     []es.Record       // the global log; log[i] has position i+1
	streams map[string][]int  // stream -> indexes into log, in version order
	ids     map[uuid.UUID]int // event ID -> index into log
	changed chan struct{}     // closed and replaced by every append
	snaps   map[string]es.Snapshot
}

var (
	_ es.Store         = (*Store)(nil)
	_ es.SnapshotStore = (*Store)(nil)
	_ es.Counter       = (*Store)(nil)
)

// New returns an empty store, configured by cfg when given (at most one
// Config; none is the zero Config). It panics if cfg is invalid (see
// [Config.Validate]), a programming error.
func New(cfg ...Config) *Store {
	var c Config
	switch len(cfg) {
	case 0:
	case 1:
		c = cfg[0]
	default:
		panic("memstore: New: more than one Config")
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return &Store{
		limits: es.SizeLimits{
			MaxEventSize:  cmp.Or(c.MaxEventSize, MaxEventSizeDefault),
			MaxAppendSize: cmp.Or(c.MaxAppendSize, MaxAppendSizeDefault),
		},
		streams: make(map[string][]int),
		ids:     make(map[uuid.UUID]int),
		changed: make(chan struct{}),
		snaps:   make(map[string]es.Snapshot),
	}
}

// Append implements [es.Store]. It validates with [es.ValidateAppend] and
// checks the sizes of [Config], then,
// under the store's lock, either recognizes a retry of an earlier append or
// checks expected and writes all events.
//
// An append is a retry when every one of its event IDs is already stored in
// stream, consecutively and in the same order, and, when expected names an
// exact version (or [es.NoStream]), starting right after it. A retry returns
// the [es.AppendResult] of the last of those events and writes nothing. An
// append that carries some stored IDs but is not a retry fails with a
// [*es.DuplicateEventIDError].
func (s *Store) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return es.AppendResult{}, fmt.Errorf("memstore: append to %s: %w", stream, err)
	}
	if err := es.ValidateAppend(stream, events); err != nil {
		return es.AppendResult{}, err
	}
	if err := s.limits.Check(stream, events); err != nil {
		return es.AppendResult{}, err
	}
	// Copy the input so that the caller can reuse its slices and maps.
	in := make([]es.EventData, len(events))
	for i, e := range events {
		if e.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return es.AppendResult{}, fmt.Errorf("memstore: append to %s: new event id: %w", stream, err)
			}
			e.ID = id
		}
		md := e.Metadata.Clone()
		if md == nil {
			md = es.Metadata{}
		}
		in[i] = es.EventData{ID: e.ID, Type: e.Type, Data: bytes.Clone(e.Data), Metadata: md}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	if res, ok, err := s.retried(stream, expected, in); ok || err != nil {
		return res, err
	}
	current := int64(len(s.streams[stream]))
	if !expected.Allows(current) {
		return es.AppendResult{}, &es.VersionConflictError{Stream: stream, Expected: expected, Actual: current}
	}
	at := time.Now().UTC()
	for i, e := range in {
		n := len(s.log)
		pos := es.Position{Commit: uint64(n + 1), Prepare: uint64(n + 1)}
		s.log = append(s.log, es.Record{
			ID:         e.ID,
			Stream:     stream,
			Version:    current + int64(i) + 1,
			Position:   pos,
			Type:       e.Type,
			Data:       e.Data,
			Metadata:   e.Metadata,
			RecordedAt: at,
		})
		s.streams[stream] = append(s.streams[stream], n)
		s.ids[e.ID] = n
	}
	close(s.changed)
	s.changed = make(chan struct{})
	last := s.log[len(s.log)-1]
	return es.AppendResult{Stream: stream, Version: last.Version, Position: last.Position}, nil
}

// retried reports whether events repeat an earlier append to stream (see
// [Store.Append]) and if so returns its result. It returns an error when
// some of the IDs are stored but the append is not a retry. The caller holds
// s.mu.
func (s *Store) retried(stream string, expected es.ExpectedVersion, events []es.EventData) (es.AppendResult, bool, error) {
	var stored []uuid.UUID
	for _, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			stored = append(stored, e.ID)
		}
	}
	switch len(stored) {
	case 0:
		return es.AppendResult{}, false, nil
	case len(events):
	default:
		return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: stored[0]}
	}
	dup := &es.DuplicateEventIDError{Stream: stream, ID: events[0].ID}
	r := s.log[s.ids[events[0].ID]]
	if r.Stream != stream {
		return es.AppendResult{}, false, dup
	}
	if v, exact := expected.Version(); exact && r.Version != v+1 {
		return es.AppendResult{}, false, dup
	}
	idx := s.streams[stream]
	start := int(r.Version - 1)
	if start+len(events) > len(idx) {
		return es.AppendResult{}, false, dup
	}
	for i, e := range events {
		if s.log[idx[start+i]].ID != e.ID {
			return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: e.ID}
		}
	}
	last := s.log[idx[start+len(events)-1]]
	return es.AppendResult{Stream: stream, Version: last.Version, Position: last.Position}, true, nil
}

// ReadStream implements [es.Store].
func (s *Store) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: read %s: %w", stream, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := s.streams[stream]
	if len(idx) == 0 {
		return nil, &es.StreamNotFoundError{Stream: stream}
	}
	n := int64(len(idx))
	var out []es.Record
	full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
	switch opts.Direction {
	case es.Forwards:
		for v := max(opts.From, 1); v <= n && !full(); v++ {
			out = append(out, clone(s.log[idx[v-1]]))
		}
	case es.Backwards:
		from := opts.From
		if from <= 0 || from > n {
			from = n
		}
		for v := from; v >= 1 && !full(); v-- {
			out = append(out, clone(s.log[idx[v-1]]))
		}
	default:
		return nil, fmt.Errorf("memstore: read %s: unknown direction %d", stream, opts.Direction)
	}
	return out, nil
}

// ReadAll implements [es.Store].
func (s *Store) ReadAll(ctx context.Context, after es.Position, limit int) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: read all: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.readAll(after, limit), nil
}

// readAll returns copies of up to limit records after the position after.
// The caller holds s.mu.
func (s *Store) readAll(after es.Position, limit int) []es.Record {
	if limit <= 0 {
		limit = es.BatchSizeDefault
	}
	i := sort.Search(len(s.log), func(i int) bool { return after.Before(s.log[i].Position) })
	out := make([]es.Record, 0, min(limit, len(s.log)-i))
	for _, r := range s.log[i:min(i+limit, len(s.log))] {
		out = append(out, clone(r))
	}
	return out
}

// Subscribe implements [es.Store]. It starts no goroutine: the sequence reads
// under the lock and, once caught up, waits for the next append.
func (s *Store) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	return func(yield func([]es.Record, error) bool) {
		after := opts.After
		for ctx.Err() == nil {
			s.mu.RLock()
			batch := s.readAll(after, opts.BatchSize)
			changed := s.changed
			s.mu.RUnlock()
			if len(batch) > 0 {
				if !yield(batch, nil) {
					return
				}
				after = batch[len(batch)-1].Position
				continue
			}
			select {
			case <-ctx.Done():
			case <-changed:
			}
		}
	}
}

// Head implements [es.Store].
func (s *Store) Head(ctx context.Context) (es.Position, error) {
	if err := ctx.Err(); err != nil {
		return es.Start, fmt.Errorf("memstore: head: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.log) == 0 {
		return es.Start, nil
	}
	return s.log[len(s.log)-1].Position, nil
}

// CountEvents implements [es.Counter]; the count is exact.
func (s *Store) CountEvents(ctx context.Context, after, upTo es.Position) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: count events: %w", err)
	}
	if !after.Before(upTo) {
		return 0, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// upToIndex is the number of records at or before p.
	upToIndex := func(p es.Position) int {
		return sort.Search(len(s.log), func(i int) bool { return p.Before(s.log[i].Position) })
	}
	return int64(upToIndex(upTo) - upToIndex(after)), nil
}

// clone returns a copy of r that shares no memory with the stored record.
func clone(r es.Record) es.Record {
	r.Data = bytes.Clone(r.Data)
	r.Metadata = r.Metadata.Clone()
	return r
}
