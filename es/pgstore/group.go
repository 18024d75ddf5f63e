package pgstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
)

// Group commit
//
// Every append sent alone costs a round trip, a commit and, with durable
// settings (fsync and synchronous_commit on), a wait for a WAL flush. So
// concurrent calls of [Store.Append] share commits: an append that finds no
// other append of the store in flight is sent at once, alone, exactly as
// without grouping; appends that arrive while one is in flight queue up,
// and when it is done they are sent together, up to
// [Config.GroupCommitMax] of them and [Config.MaxAppendSize] bytes, and so
// on while appends keep arriving (a goroutine sends them; it ends when the
// queue is empty). There is no timer: the batching window is the time the
// previous commit took, and a single client never waits.
//
// A group is one pipeline of statements, one round trip: first the
// advisory locks of all its streams, taken in the order of their keys (so
// that two groups, or a group and a single append, never wait for each
// other in a cycle), then one statement per append, in queue order, then
// one notification (see notify.go) for the whole group, then the commit.
// The statements of a pipeline run in one implicit transaction, so the
// group commits once. An append whose event IDs are the store's own (new
// version 7 UUIDs, which cannot be stored yet) is a plain INSERT … SELECT
// that inserts only if the expected version holds and otherwise returns
// the stream's version: the stream is locked already, so the statement
// sees its current version. An append with IDs of the caller's, which may
// be a retry, calls the append function, which tells a retry from a
// duplicate. Neither raises an error for a conflict, a duplicate or a
// retry, so each append of the group gets its own result and the others
// are unaffected. Two appends to one stream in a group run one after the
// other in queue order: the second sees the first's events, as it would
// sequentially.
//
// Any other error the server reports (a deadlock with a caller's
// transaction, input PostgreSQL refuses, a unique violation raised by a
// concurrent writer) aborts the group's transaction, so nothing of it is
// stored: then each append of the group is sent again alone and gets the
// result it would have got alone. When the connection breaks after the
// group was sent, every append of the group returns an
// [*es.UnknownOutcomeError], as each would alone.

// group is the queue of appends waiting for the append in flight.
type group struct {
	mu sync.Mutex
	// inFlight counts the appends sent alone and the groups in flight, at
	// most limit.
	inFlight int
	limit    int
	queue    []*queued

	// Test hooks, set before the store is used. hold, when set, is called
	// by an append that is about to be sent alone, before it is sent;
	// queuedHook is called with the number of queued appends after one
	// was queued; sending with the group's connection just before a group
	// of more than one append is sent.
	hold       func()
	queuedHook func(n int)
	sending    func(conn *pgx.Conn, n int)
}

// queued is an append waiting in the queue.
type queued struct {
	ctx   context.Context
	a     *appendArgs
	taken bool          // taken into a group; under group.mu
	done  chan struct{} // closed when res and err are set
	res   es.AppendResult
	err   error
}

// appendGrouped is Append with group commit.
func (s *Store) appendGrouped(ctx context.Context, a *appendArgs) (es.AppendResult, error) {
	g := &s.group
	g.mu.Lock()
	if g.inFlight < g.limit {
		g.inFlight++
		g.mu.Unlock()
		if g.hold != nil {
			g.hold()
		}
		res, err := s.appendAlone(ctx, a)
		s.next()
		return res, err
	}
	q := &queued{ctx: ctx, a: a, done: make(chan struct{})}
	g.queue = append(g.queue, q)
	n := len(g.queue)
	g.mu.Unlock()
	if g.queuedHook != nil {
		g.queuedHook(n)
	}
	select {
	case <-q.done:
		return q.res, q.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	taken := q.taken
	if !taken {
		g.queue = slices.DeleteFunc(g.queue, func(o *queued) bool { return o == q })
	}
	g.mu.Unlock()
	select {
	case <-q.done: // decided meanwhile
		return q.res, q.err
	default:
	}
	if !taken {
		return es.AppendResult{}, fmt.Errorf("pgstore: append to %s: %w", a.stream, context.Cause(ctx))
	}
	// Sent, or about to be: the group decides, but this caller stops
	// waiting.
	return es.AppendResult{}, &es.UnknownOutcomeError{Stream: a.stream, Err: context.Cause(ctx)}
}

// next is called by the append in flight when it is done: it sends the
// queued appends, in a goroutine that keeps sending groups while appends
// queue up, or marks the store idle.
func (s *Store) next() {
	g := &s.group
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.inFlight--
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	go func() {
		for {
			members := s.take()
			if members == nil {
				return
			}
			s.sendGroup(members)
			// Let the callers just woken run before the next group is
			// taken: those that append again at once (a busy command
			// handler) then join it, rather than waiting for the one
			// after. Without this, with 8 clients appending in a loop,
			// the next group was mostly taken before they had appended
			// again, groups stayed small, and an append cost about twice
			// the CPU (docs/benchmarks.md).
			runtime.Gosched()
		}
	}()
}

// take takes the next group from the queue, or marks the store idle and
// returns nil when the queue is empty.
func (s *Store) take() []*queued {
	g := &s.group
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.inFlight--
		return nil
	}
	n, size := 0, 0
	for n < len(g.queue) && n < s.cfg.GroupCommitMax {
		if n > 0 && size+g.queue[n].a.size > s.cfg.MaxAppendSize {
			break
		}
		size += g.queue[n].a.size
		g.queue[n].taken = true
		n++
	}
	members := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	return members
}

// sendGroup sends members as one group, or alone when there is one, and
// gives each its result.
func (s *Store) sendGroup(members []*queued) {
	// The group's statements outlive the context of any one append: it is
	// cancelled only when every append of the group has stopped waiting.
	ctx, cancel := context.WithCancel(context.WithoutCancel(members[0].ctx))
	defer cancel()
	var (
		mu      sync.Mutex
		waiting = len(members)
	)
	for _, m := range members {
		stop := context.AfterFunc(m.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if waiting--; waiting == 0 {
				cancel()
			}
		})
		defer stop()
	}
	if len(members) == 1 {
		m := members[0]
		m.res, m.err = s.appendAlone(ctx, m.a)
		close(m.done)
		return
	}
	results, err := s.appendGroup(ctx, members)
	if err == nil {
		for i, m := range members {
			m.res, m.err = results[i].res, results[i].err
			close(m.done)
		}
		return
	}
	if !refused(err) {
		var connErr error = &connError{err}
		if !errSent(err) {
			// Nothing was sent: the connection could not be had.
			for _, m := range members {
				m.err = fmt.Errorf("pgstore: append to %s: %w", m.a.stream, connErr)
				close(m.done)
			}
			return
		}
		for _, m := range members {
			m.err = &es.UnknownOutcomeError{Stream: m.a.stream, Err: connErr}
			close(m.done)
		}
		return
	}
	// The server refused the group, so nothing of it is stored: send each
	// append alone, for the result it gets alone.
	for _, m := range members {
		m.res, m.err = s.appendAlone(ctx, m.a)
		close(m.done)
	}
}

// groupResult is the result of one append of a group.
type groupResult struct {
	res es.AppendResult
	err error
}

// notSentError is the failure to get a connection for a group.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// errSent reports whether the group's statements may have been sent when
// err happened.
func errSent(err error) bool {
	var notSent *notSentError
	return !errors.As(err, &notSent)
}

// appendGroup sends the appends of members in one pipeline, one
// transaction. An error means that the whole group failed: refused by the
// server (nothing stored), or with a broken connection.
func (s *Store) appendGroup(ctx context.Context, members []*queued) ([]groupResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, &notSentError{err}
	}
	defer conn.Release()
	keys := make([]int32, 0, len(members))
	for _, m := range members {
		keys = append(keys, m.a.key)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	batch := &pgx.Batch{}
	batch.Queue(s.q.lockStreams, keys)
	type row struct {
		status   int16
		actual   *int64
		commit   *uint64
		position *int64
		version  *int64
		dupID    *uuid.UUID
	}
	rows := make([]row, len(members))
	for i, m := range members {
		a := m.a
		r := &rows[i]
		if a.check {
			// IDs from the caller may be stored already: the append
			// function tells a retry from a duplicate.
			batch.Queue(s.q.append, a.stream, a.key, a.kind, a.version, a.check, true, a.ids, a.types, a.data, a.metadata).
				QueryRow(func(row pgx.Row) error {
					return row.Scan(&r.status, &r.actual, &r.commit, &r.position, &r.dupID)
				})
			continue
		}
		batch.Queue(s.q.groupAppend, a.stream, a.min, a.max, a.ids, a.types, a.data, a.metadata).
			QueryRow(func(row pgx.Row) error {
				return row.Scan(&r.actual, &r.commit, &r.position, &r.version)
			})
	}
	batch.Queue(s.q.groupNotify, members[0].a.slot)
	if s.group.sending != nil {
		s.group.sending(conn.Conn(), len(members))
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	results := make([]groupResult, len(members))
	for i, m := range members {
		r := rows[i]
		if !m.a.check {
			// The statement of groupAppend: no position means that the
			// expected version did not hold.
			r.status = statusConflict
			if r.position != nil {
				r.status, r.actual = statusAppended, r.version
			}
		}
		results[i].res, results[i].err = appendStatus(m.a, r.status, r.actual, r.commit, r.position, r.dupID)
	}
	return results, nil
}

// groupsInFlight is how many appends sent alone and groups of appends a
// store has in flight at most; appends beyond wait in the queue. One, as
// measured (docs/benchmarks.md): two let a second group start as soon as
// one append arrives, so groups are smaller, and the CPU per append with 8
// clients rose by a quarter to a third.
const groupsInFlight = 1
