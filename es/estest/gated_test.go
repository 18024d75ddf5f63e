package estest_test

import (
	"bytes"
	"context"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// gatedStore behaves like a PostgreSQL store: an append takes its positions,
// (transaction id, sequence), when it starts, and may commit after appends
// that started later. Readers of the global log see only events of
// transactions older than every open transaction in the whole cluster, which
// all gated stores of a test binary share, as parallel tests share a
// database server.
//
// Its naive fields make it do the classic mistake instead: readers see every
// committed event, so one that commits late behind a reader's checkpoint is
// skipped.
type gatedStore struct {
	cluster        *cluster
	naiveReadAll   bool // ReadAll and Head see every committed event
	naiveSubscribe bool // Subscribe sees every committed event

	mu      sync.Mutex
	seq     uint64
	log     []es.Record // committed, in commit order
	streams map[string][]es.Record
	ids     map[uuid.UUID]es.Record
	locks   map[string]chan struct{} // a stream's lock, held by an open append
}

func newGatedStore(c *cluster) *gatedStore {
	return &gatedStore{
		cluster: c,
		streams: make(map[string][]es.Record),
		ids:     make(map[uuid.UUID]es.Record),
		locks:   make(map[string]chan struct{}),
	}
}

// cluster hands out transaction ids and knows which are open.
type cluster struct {
	mu      sync.Mutex
	next    uint64
	open    map[uint64]bool
	changed chan struct{} // closed and replaced when a transaction ends
}

func newCluster() *cluster {
	return &cluster{next: 1, open: make(map[uint64]bool), changed: make(chan struct{})}
}

func (c *cluster) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	xid := c.next
	c.next++
	c.open[xid] = true
	return xid
}

func (c *cluster) end(xid uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.open, xid)
	close(c.changed)
	c.changed = make(chan struct{})
}

// horizon returns the oldest transaction id that may still be open: events
// of older transactions can be read. It also returns a channel that is
// closed when the horizon may have moved.
func (c *cluster) horizon() (uint64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.next
	for xid := range c.open {
		h = min(h, xid)
	}
	return h, c.changed
}

func (s *gatedStore) lockStream(ctx context.Context, stream string) (unlock func(), err error) {
	for {
		s.mu.Lock()
		l, held := s.locks[stream]
		if !held {
			l = make(chan struct{})
			s.locks[stream] = l
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.locks, stream)
				s.mu.Unlock()
				close(l)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-l:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// hold performs an append and keeps its transaction open until commit.
func (s *gatedStore) hold(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (commit func() error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := es.ValidateAppend(stream, events); err != nil {
		return nil, err
	}
	unlock, err := s.lockStream(ctx, stream)
	if err != nil {
		return nil, err
	}
	xid := s.cluster.begin()
	abort := func() { s.cluster.end(xid); unlock() }

	s.mu.Lock()
	_, retry, err := s.retried(stream, expected, events)
	current := int64(len(s.streams[stream]))
	if err == nil && !retry && !expected.Allows(current) {
		err = &es.VersionConflictError{Stream: stream, Expected: expected, Actual: current}
	}
	if err != nil || retry {
		s.mu.Unlock()
		abort()
		if err != nil {
			return nil, err
		}
		return func() error { return nil }, nil
	}
	pending := make([]es.Record, len(events))
	for i, e := range events {
		if e.ID == uuid.Nil {
			e.ID = uuid.New()
		}
		s.seq++
		pending[i] = es.Record{
			ID: e.ID, Stream: stream, Version: current + int64(i) + 1,
			Position: es.Position{Commit: xid, Prepare: s.seq},
			Type:     e.Type, Data: bytes.Clone(e.Data), Metadata: e.Metadata.Clone(),
		}
	}
	s.mu.Unlock()

	var once sync.Once
	return func() error {
		once.Do(func() {
			s.mu.Lock()
			for _, r := range pending {
				r.RecordedAt = time.Now().UTC()
				s.log = append(s.log, r)
				s.streams[stream] = append(s.streams[stream], r)
				s.ids[r.ID] = r
			}
			s.mu.Unlock()
			abort()
		})
		return nil
	}, nil
}

// retried applies the idempotency rule of es.Store.Append. The caller holds
// s.mu.
func (s *gatedStore) retried(stream string, expected es.ExpectedVersion, events []es.EventData) (es.AppendResult, bool, error) {
	var stored []uuid.UUID
	for _, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			stored = append(stored, e.ID)
		}
	}
	if len(stored) == 0 {
		return es.AppendResult{}, false, nil
	}
	first := s.ids[events[0].ID]
	start := first.Version - 1
	recs := s.streams[stream]
	if v, exact := expected.Version(); len(stored) < len(events) || first.Stream != stream ||
		(exact && first.Version != v+1) || int(start)+len(events) > len(recs) {
		return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: stored[0]}
	}
	for i, e := range events {
		if recs[int(start)+i].ID != e.ID {
			return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: e.ID}
		}
	}
	last := recs[int(start)+len(events)-1]
	return es.AppendResult{Stream: stream, Version: last.Version, Position: last.Position}, true, nil
}

func (s *gatedStore) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	if err := es.ValidateAppend(stream, events); err != nil {
		return es.AppendResult{}, err
	}
	// Give zero IDs their value here, so that the result can name them.
	events = slices.Clone(events)
	for i := range events {
		if events[i].ID == uuid.Nil {
			events[i].ID = uuid.New()
		}
	}
	commit, err := s.hold(ctx, stream, expected, events...)
	if err != nil {
		return es.AppendResult{}, err
	}
	if err := commit(); err != nil {
		return es.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.ids[events[len(events)-1].ID]
	return es.AppendResult{Stream: stream, Version: last.Version, Position: last.Position}, nil
}

func (s *gatedStore) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.streams[stream]
	if len(recs) == 0 {
		return nil, &es.StreamNotFoundError{Stream: stream}
	}
	n := int64(len(recs))
	var out []es.Record
	if opts.Direction == es.Backwards {
		from := opts.From
		if from <= 0 || from > n {
			from = n
		}
		for v := from; v >= 1 && (opts.Limit <= 0 || len(out) < opts.Limit); v-- {
			out = append(out, copyRecord(recs[v-1]))
		}
		return out, nil
	}
	for v := max(opts.From, 1); v <= n && (opts.Limit <= 0 || len(out) < opts.Limit); v++ {
		out = append(out, copyRecord(recs[v-1]))
	}
	return out, nil
}

func (s *gatedStore) ReadAll(ctx context.Context, after es.Position, limit int) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	horizon, _ := s.cluster.horizon()
	return s.visible(horizon, s.naiveReadAll, after, limit), nil
}

// visible returns up to limit events after the position after that readers
// may see below horizon, or that are committed if naive is set.
func (s *gatedStore) visible(horizon uint64, naive bool, after es.Position, limit int) []es.Record {
	if limit <= 0 {
		limit = es.BatchSizeDefault
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []es.Record
	for _, r := range s.log {
		if (naive || r.Position.Commit < horizon) && after.Before(r.Position) {
			out = append(out, copyRecord(r))
		}
	}
	slices.SortFunc(out, func(a, b es.Record) int { return a.Position.Compare(b.Position) })
	return out[:min(limit, len(out))]
}

func (s *gatedStore) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	return func(yield func([]es.Record, error) bool) {
		after := opts.After
		for ctx.Err() == nil {
			horizon, changed := s.cluster.horizon()
			batch := s.visible(horizon, s.naiveSubscribe, after, opts.BatchSize)
			if len(batch) > 0 {
				if !yield(batch, nil) {
					return
				}
				after = batch[len(batch)-1].Position
				continue
			}
			select {
			case <-changed:
			case <-ctx.Done():
			}
		}
	}
}

func (s *gatedStore) Head(ctx context.Context) (es.Position, error) {
	if err := ctx.Err(); err != nil {
		return es.Start, err
	}
	horizon, _ := s.cluster.horizon()
	s.mu.Lock()
	defer s.mu.Unlock()
	head := es.Start
	for _, r := range s.log {
		if (s.naiveReadAll || r.Position.Commit < horizon) && head.Before(r.Position) {
			head = r.Position
		}
	}
	return head, nil
}

func copyRecord(r es.Record) es.Record {
	r.Data = bytes.Clone(r.Data)
	r.Metadata = r.Metadata.Clone()
	return r
}
