package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

// groupRig forces appends into one group: the first append to the store
// is held before it is sent, the appends started meanwhile queue up, and
// when the test releases the first one, the queued ones are sent together.
type groupRig struct {
	t       *testing.T
	store   *pgstore.Store
	schema  string
	release chan struct{}
	held    chan struct{}
	queued  chan int
	sending chan groupSent
	once    sync.Once
	armed   atomic.Bool
}

type groupSent struct {
	pid uint32
	n   int
}

type appendOutcome struct {
	res es.AppendResult
	err error
}

func newGroupRig(t *testing.T, cfg pgstore.Config) *groupRig {
	t.Helper()
	r := &groupRig{
		t:       t,
		release: make(chan struct{}),
		held:    make(chan struct{}),
		queued:  make(chan int, 100),
		sending: make(chan groupSent, 100),
	}
	pool, schema := pgtest.NewSchema(t)
	cfg.Schema = schema
	s := pgstore.New(pool, cfg)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r.on(s, schema)
}

// newGroupRigOn returns a rig for another store in the schema of r.
func (r *groupRig) newGroupRigOn(t *testing.T, cfg pgstore.Config) *groupRig {
	t.Helper()
	o := &groupRig{
		t:       t,
		release: make(chan struct{}),
		held:    make(chan struct{}),
		queued:  make(chan int, 100),
		sending: make(chan groupSent, 100),
	}
	pool, _ := pgtest.NewSchema(t)
	cfg.Schema = r.schema
	return o.on(pgstore.New(pool, cfg), r.schema)
}

func (r *groupRig) on(s *pgstore.Store, schema string) *groupRig {
	pgstore.SetGroupHooks(s, pgstore.GroupHooks{
		Hold: func() {
			if !r.armed.Load() {
				return
			}
			first := false
			r.once.Do(func() { first = true })
			if first {
				close(r.held)
				<-r.release
			}
		},
		Queued:  func(n int) { r.queued <- n },
		Sending: func(pid uint32, n int) { r.sending <- groupSent{pid, n} },
	})
	r.store, r.schema = s, schema
	return r
}

// hold starts the append that holds the others back, and waits until it
// is held.
func (r *groupRig) hold() <-chan appendOutcome {
	r.armed.Store(true)
	out := r.start(r.t.Context(), "lead", es.NoStream, ev("Lead", `{}`))
	select {
	case <-r.held:
	case <-time.After(waitTimeout):
		r.t.Fatal("the first append was not held")
	}
	return out
}

// start starts an append.
func (r *groupRig) start(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) <-chan appendOutcome {
	out := make(chan appendOutcome, 1)
	go func() {
		res, err := r.store.Append(ctx, stream, expected, events...)
		out <- appendOutcome{res, err}
	}()
	return out
}

// queue starts an append and waits until it is queued as the n-th.
func (r *groupRig) queue(ctx context.Context, n int, stream string, expected es.ExpectedVersion, events ...es.EventData) <-chan appendOutcome {
	r.t.Helper()
	out := r.start(ctx, stream, expected, events...)
	r.waitQueued(n)
	return out
}

func (r *groupRig) waitQueued(n int) {
	r.t.Helper()
	for {
		select {
		case got := <-r.queued:
			if got == n {
				return
			}
		case <-time.After(waitTimeout):
			r.t.Fatalf("fewer than %d appends queued", n)
		}
	}
}

func (r *groupRig) wait(out <-chan appendOutcome) appendOutcome {
	r.t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(waitTimeout):
		r.t.Fatal("an append did not return")
	}
	return appendOutcome{}
}

// txIDs returns the tx_id of every event, by event ID.
func (r *groupRig) txIDs() map[uuid.UUID]string {
	r.t.Helper()
	rows, err := pgtest.Admin(r.t).Query(r.t.Context(), fmt.Sprintf("SELECT event_id, tx_id::text FROM %s", pgx.Identifier{r.schema, "events"}.Sanitize()))
	if err != nil {
		r.t.Fatal(err)
	}
	ids := map[uuid.UUID]string{}
	for rows.Next() {
		var id uuid.UUID
		var tx string
		if err := rows.Scan(&id, &tx); err != nil {
			r.t.Fatal(err)
		}
		ids[id] = tx
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return ids
}

// Appends to distinct streams that queue behind an append in flight are
// sent as one group: all succeed, in one transaction, and each gets the
// position of its own event.
func TestGroupCommitDistinctStreams(t *testing.T) {
	t.Parallel()
	const n = 8
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	lead := r.hold()
	events := make([]es.EventData, n)
	outs := make([]<-chan appendOutcome, n)
	for i := range n {
		events[i] = ev("E", fmt.Sprintf(`{"i": %d}`, i))
		if i%2 == 1 { // an ID of the store's own
			events[i].ID = uuid.Nil
		}
		outs[i] = r.start(ctx, fmt.Sprintf("s-%d", i), es.NoStream, events[i])
	}
	r.waitQueued(n)
	close(r.release)
	if o := r.wait(lead); o.err != nil {
		t.Fatalf("first append: %v", o.err)
	}
	var sent groupSent
	select {
	case sent = <-r.sending:
	case <-time.After(waitTimeout):
		t.Fatal("no group was sent")
	}
	if sent.n != n {
		t.Errorf("group size %d; want %d", sent.n, n)
	}
	results := make([]es.AppendResult, n)
	for i, out := range outs {
		o := r.wait(out)
		if o.err != nil {
			t.Fatalf("append %d: %v", i, o.err)
		}
		results[i] = o.res
	}
	txs := r.txIDs()
	for i, res := range results {
		if res.Version != 1 || res.Stream != fmt.Sprintf("s-%d", i) {
			t.Errorf("append %d: stream %s version %d; want s-%d version 1", i, res.Stream, res.Version, i)
		}
		recs, err := r.store.ReadStream(ctx, res.Stream, es.ReadStreamOptions{})
		if err != nil || len(recs) != 1 {
			t.Fatalf("stream %s: %d events, %v; want 1", res.Stream, len(recs), err)
		}
		if got, want := txs[recs[0].ID], txs[events[0].ID]; got != want {
			t.Errorf("append %d: tx_id %s; want %s, the group's", i, got, want)
		}
		if recs[0].Position != res.Position {
			t.Errorf("append %d: result position %v; want the stored %v", i, res.Position, recs[0].Position)
		}
	}
}

// A version conflict and a duplicate event ID in a group fail their own
// appends only; the others commit, together.
func TestGroupCommitConflictInGroup(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	stored := ev("Stored", `{}`)
	if _, err := r.store.Append(ctx, "elsewhere", es.NoStream, stored); err != nil {
		t.Fatal(err)
	}
	lead := r.hold()
	// Events with IDs of the caller's and of the store's own, which the
	// group appends differently.
	okA, okB := ev("A", `{}`), es.EventData{Type: "B", Data: []byte(`{}`)}
	a := r.queue(ctx, 1, "a", es.NoStream, okA)
	conflict := r.queue(ctx, 2, "c", es.Exact(5), es.EventData{Type: "C", Data: []byte(`{}`)})
	dup := r.queue(ctx, 3, "d", es.Any, stored)
	b := r.queue(ctx, 4, "b", es.Any, okB)
	close(r.release)
	if o := r.wait(lead); o.err != nil {
		t.Fatalf("first append: %v", o.err)
	}
	if sent := <-r.sending; sent.n != 4 {
		t.Errorf("group size %d; want 4", sent.n)
	}
	for name, out := range map[string]<-chan appendOutcome{"a": a, "b": b} {
		if o := r.wait(out); o.err != nil || o.res.Version != 1 {
			t.Errorf("append to %s: version %d, %v; want version 1", name, o.res.Version, o.err)
		}
	}
	var vc *es.VersionConflictError
	if o := r.wait(conflict); !errors.As(o.err, &vc) || vc.Stream != "c" || vc.Actual != 0 {
		t.Errorf("append to c at version 5: %v; want a version conflict with actual version 0", o.err)
	}
	var de *es.DuplicateEventIDError
	if o := r.wait(dup); !errors.As(o.err, &de) || de.ID != stored.ID || de.Stream != "d" {
		t.Errorf("append of a stored ID to d: %v; want a duplicate event ID %s", o.err, stored.ID)
	}
	recs, err := r.store.ReadStream(ctx, "b", es.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("stream b: %d events, %v; want 1", len(recs), err)
	}
	txs := r.txIDs()
	if txs[okA.ID] == "" || txs[okA.ID] != txs[recs[0].ID] {
		t.Errorf("tx_id of a's event %q, of b's %q; want one transaction", txs[okA.ID], txs[recs[0].ID])
	}
	for _, stream := range []string{"c", "d"} {
		if recs, err := r.store.ReadStream(ctx, stream, es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
			t.Errorf("stream %s: %d events, %v; want es.ErrStreamNotFound", stream, len(recs), err)
		}
	}
}

// Appends to one stream in one group run in queue order, as they would
// one after the other: each sees the versions of those before it.
func TestGroupCommitSameStream(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	lead := r.hold()
	// With IDs of the caller's (the first and its retry) and of the
	// store's own (the others), which the group appends differently.
	first := ev("1", `{}`)
	second, fourth := es.EventData{Type: "2", Data: []byte(`{}`)}, es.EventData{Type: "4", Data: []byte(`{}`)}
	o1 := r.queue(ctx, 1, "s", es.NoStream, first)
	o2 := r.queue(ctx, 2, "s", es.Exact(1), second)
	o3 := r.queue(ctx, 3, "s", es.Exact(1), es.EventData{Type: "3", Data: []byte(`{}`)})
	o4 := r.queue(ctx, 4, "s", es.Any, fourth)
	o5 := r.queue(ctx, 5, "s", es.NoStream, first) // a retry of the first
	close(r.release)
	r.wait(lead)
	if sent := <-r.sending; sent.n != 5 {
		t.Errorf("group size %d; want 5", sent.n)
	}
	r1 := r.wait(o1)
	if r1.err != nil || r1.res.Version != 1 {
		t.Errorf("first: version %d, %v; want 1", r1.res.Version, r1.err)
	}
	if o := r.wait(o2); o.err != nil || o.res.Version != 2 {
		t.Errorf("second at version 1: version %d, %v; want 2", o.res.Version, o.err)
	}
	var vc *es.VersionConflictError
	if o := r.wait(o3); !errors.As(o.err, &vc) || vc.Actual != 2 {
		t.Errorf("third at version 1: %v; want a version conflict with actual version 2", o.err)
	}
	if o := r.wait(o4); o.err != nil || o.res.Version != 3 {
		t.Errorf("fourth at any version: version %d, %v; want 3", o.res.Version, o.err)
	}
	if o := r.wait(o5); o.err != nil || o.res != r1.res {
		t.Errorf("retry of the first: %+v, %v; want the first's result %+v", o.res, o.err, r1.res)
	}
	recs, err := r.store.ReadStream(ctx, "s", es.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "2", "4"}
	if len(recs) != len(want) {
		t.Fatalf("stream s has %d events; want %d", len(recs), len(want))
	}
	for i, rec := range recs {
		if rec.Type != want[i] || rec.Version != int64(i+1) {
			t.Errorf("event %d: type %s version %d; want %s version %d", i, rec.Type, rec.Version, want[i], i+1)
		}
	}
	if recs[0].ID != first.ID {
		t.Errorf("event 0: ID %s; want the caller's %s", recs[0].ID, first.ID)
	}
}

// An append whose context ends while it is queued leaves the queue with
// the context's error and writes nothing; the rest of the group commits.
func TestGroupCommitCancelledWhileQueued(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	lead := r.hold()
	cctx, cancel := context.WithCancel(ctx)
	gone := r.queue(cctx, 1, "gone", es.NoStream, ev("Gone", `{}`))
	kept := r.queue(ctx, 2, "kept", es.NoStream, ev("Kept", `{}`))
	cancel()
	o := r.wait(gone)
	if !errors.Is(o.err, context.Canceled) || errors.Is(o.err, es.ErrUnknownOutcome) {
		t.Errorf("append cancelled while queued: %v; want context.Canceled, not an unknown outcome", o.err)
	}
	close(r.release)
	r.wait(lead)
	if o := r.wait(kept); o.err != nil {
		t.Errorf("the other queued append: %v", o.err)
	}
	if recs, err := r.store.ReadStream(ctx, "gone", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("stream of the cancelled append: %d events, %v; want es.ErrStreamNotFound", len(recs), err)
	}
}

// A group never takes more than GroupCommitMax appends.
func TestGroupCommitMax(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{GroupCommitMax: 3})
	ctx := t.Context()
	lead := r.hold()
	var outs []<-chan appendOutcome
	for i := range 5 {
		outs = append(outs, r.queue(ctx, i+1, fmt.Sprintf("s-%d", i), es.NoStream, ev("E", `{}`)))
	}
	close(r.release)
	r.wait(lead)
	for i, out := range outs {
		if o := r.wait(out); o.err != nil {
			t.Errorf("append %d: %v", i, o.err)
		}
	}
	// The first group takes 3 of the 5; the other two go alone or as a
	// group of 2, which reports itself.
	if sent := <-r.sending; sent.n != 3 {
		t.Errorf("first group size %d; want 3", sent.n)
	}
	select {
	case sent := <-r.sending:
		if sent.n != 2 {
			t.Errorf("second group size %d; want 2", sent.n)
		}
	default:
		t.Error("the last two appends were not sent as a group")
	}
}

// When the server refuses a statement of the group (here a CHECK
// constraint the test adds raises an error), nothing of the group is stored, and each
// append is sent again alone: the others succeed, the bad one gets its
// own error.
func TestGroupCommitRefusedGroup(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := pgtest.Admin(t).Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT no_bad CHECK (type <> 'Bad')",
		pgx.Identifier{r.schema, "events"}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	lead := r.hold()
	a := r.queue(ctx, 1, "a", es.NoStream, ev("A", `{}`))
	bad := r.queue(ctx, 2, "bad", es.NoStream, ev("Bad", `{}`))
	b := r.queue(ctx, 3, "b", es.NoStream, ev("B", `{}`))
	close(r.release)
	r.wait(lead)
	for name, out := range map[string]<-chan appendOutcome{"a": a, "b": b} {
		if o := r.wait(out); o.err != nil || o.res.Version != 1 {
			t.Errorf("append to %s: version %d, %v; want version 1", name, o.res.Version, o.err)
		}
	}
	var pgErr *pgconn.PgError
	if o := r.wait(bad); !errors.As(o.err, &pgErr) || pgErr.ConstraintName != "no_bad" || errors.Is(o.err, es.ErrUnknownOutcome) {
		t.Errorf("append the CHECK constraint refuses: %v; want the server's error for constraint no_bad", o.err)
	}
	if sent := <-r.sending; sent.n != 3 {
		t.Errorf("group size %d; want 3", sent.n)
	}
}

// The server process of a group is terminated while the group commits (a
// deferred trigger makes the commit wait for an advisory lock the test
// holds): every append of the group returns an *es.UnknownOutcomeError, and
// retries with the same events store each once.
func TestGroupCommitTerminatedDuringCommit(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	lockKey := int64(uuid.New().ID())
	sc := pgx.Identifier{r.schema}.Sanitize()
	if _, err := pgtest.Admin(t).Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION %[1]s.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_catalog.pg_advisory_xact_lock_shared(%[2]d);
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON %[1]s.events
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (NEW.stream_id <> 'lead') EXECUTE FUNCTION %[1]s.hold_commit()`, sc, lockKey)); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		t.Fatal(err)
	}

	lead := r.hold()
	type member struct {
		stream   string
		expected es.ExpectedVersion
		event    es.EventData
		out      <-chan appendOutcome
	}
	members := []*member{
		{stream: "x", expected: es.NoStream, event: ev("X", `{}`)},
		{stream: "y", expected: es.Any, event: ev("Y", `{}`)},
		{stream: "x", expected: es.Exact(1), event: ev("X2", `{}`)},
	}
	for i, m := range members {
		m.out = r.queue(ctx, i+1, m.stream, m.expected, m.event)
	}
	close(r.release)
	if o := r.wait(lead); o.err != nil {
		t.Fatalf("first append: %v", o.err)
	}
	sent := <-r.sending
	waitFor(t, func() bool { return waitingForLocks(t, sent.pid) == 1 })
	terminate(t, int32(sent.pid))
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		o := r.wait(m.out)
		var unknown *es.UnknownOutcomeError
		if !errors.As(o.err, &unknown) || !errors.Is(o.err, es.ErrUnknownOutcome) || unknown.Stream != m.stream {
			t.Errorf("append %d to %s in the terminated group: %v; want an *es.UnknownOutcomeError for %s", i, m.stream, o.err, m.stream)
			continue
		}
		checkErrorText(t, "append in a terminated group", o.err)
	}
	for i, m := range members {
		if _, err := r.store.Append(ctx, m.stream, m.expected, m.event); err != nil {
			t.Errorf("retry of append %d: %v", i, err)
		}
	}
	for stream, want := range map[string]int{"x": 2, "y": 1} {
		if recs, err := r.store.ReadStream(ctx, stream, es.ReadStreamOptions{}); err != nil || len(recs) != want {
			t.Errorf("stream %s after the retries: %d events, %v; want %d", stream, len(recs), err, want)
		}
	}
}

// An append whose context ends after its group was sent returns an
// *es.UnknownOutcomeError at once; the group goes on, and the others get
// their results. (Here the group waits for a stream lock the test holds.)
func TestGroupCommitCancelledInFlight(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	unlock := r.lockStreams(t, "locked")
	lead := r.hold()
	cctx, cancel := context.WithCancel(ctx)
	left := r.queue(cctx, 1, "left", es.NoStream, ev("Left", `{}`))
	locked := r.queue(ctx, 2, "locked", es.NoStream, ev("Locked", `{}`))
	close(r.release)
	r.wait(lead)
	sent := <-r.sending
	waitFor(t, func() bool { return waitingForLocks(t, sent.pid) == 1 })
	cancel()
	o := r.wait(left)
	var unknown *es.UnknownOutcomeError
	if !errors.As(o.err, &unknown) || unknown.Stream != "left" || !errors.Is(o.err, context.Canceled) {
		t.Errorf("append cancelled while its group was in flight: %v; want an *es.UnknownOutcomeError wrapping context.Canceled", o.err)
	}
	unlock()
	if o := r.wait(locked); o.err != nil || o.res.Version != 1 {
		t.Errorf("the other append of the group: version %d, %v; want version 1", o.res.Version, o.err)
	}
	// The group committed: the cancelled append is stored too, and a retry
	// says so.
	recs, err := r.store.ReadStream(ctx, "left", es.ReadStreamOptions{})
	if err != nil || len(recs) != 1 {
		t.Errorf("stream of the cancelled append: %d events, %v; want the group's 1", len(recs), err)
	}
}

// When every append of a group has stopped waiting, the group is cancelled:
// its server process stops waiting and nothing is stored.
func TestGroupCommitAllCancelled(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	unlock := r.lockStreams(t, "locked")
	lead := r.hold()
	cctx, cancel := context.WithCancel(ctx)
	a := r.queue(cctx, 1, "a", es.NoStream, ev("A", `{}`))
	b := r.queue(cctx, 2, "locked", es.NoStream, ev("B", `{}`))
	close(r.release)
	r.wait(lead)
	sent := <-r.sending
	waiting := func() bool { return waitingForLocks(t, sent.pid) == 1 }
	waitFor(t, waiting)
	cancel()
	for _, out := range []<-chan appendOutcome{a, b} {
		if o := r.wait(out); !errors.Is(o.err, es.ErrUnknownOutcome) {
			t.Errorf("append cancelled in flight: %v; want es.ErrUnknownOutcome", o.err)
		}
	}
	waitFor(t, func() bool { return !waiting() })
	unlock()
	// The store is usable again, and the cancelled group stored nothing.
	if _, err := r.store.Append(ctx, "after", es.NoStream, ev("After", `{}`)); err != nil {
		t.Fatalf("append after the cancelled group: %v", err)
	}
	if recs, err := r.store.ReadStream(ctx, "a", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("stream a of the cancelled group: %d events, %v; want es.ErrStreamNotFound", len(recs), err)
	}
}

// lockStreams takes the stream locks of streams on a connection of its own,
// as another process appending to them would, and returns what gives them
// up; the connection is closed when the test ends.
func (r *groupRig) lockStreams(t *testing.T, streams ...string) (unlock func()) {
	t.Helper()
	holder, err := pgx.Connect(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	streamLock, _ := pgstore.LockClasses(r.store)
	for _, stream := range streams {
		if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_lock($1, $2)", streamLock, pgstore.StreamKey(stream)); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_unlock_all()"); err != nil {
			t.Fatal(err)
		}
	}
}

// waitingForLocks counts the server processes of pids that wait for an
// advisory lock.
func waitingForLocks(t *testing.T, pids ...uint32) int {
	t.Helper()
	var n int
	if err := pgtest.Admin(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
		WHERE pid = ANY($1) AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, pids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two groups that append to the same two streams in opposite orders (from
// two stores, as two processes would) do not deadlock: each takes its
// streams' locks in the order of their keys, and each commits as one
// transaction rather than falling back to appends sent alone.
func TestGroupCommitOppositeOrders(t *testing.T) {
	t.Parallel()
	r1 := newGroupRig(t, pgstore.Config{})
	r2 := r1.newGroupRigOn(t, pgstore.Config{})
	ctx := t.Context()
	unlock := r1.lockStreams(t, "p", "q")
	lead1, lead2 := r1.hold(), r2.hold()
	p1, q1, p2, q2 := ev("P1", `{}`), ev("Q1", `{}`), ev("P2", `{}`), ev("Q2", `{}`)
	outs := []<-chan appendOutcome{
		r1.queue(ctx, 1, "p", es.Any, p1),
		r1.queue(ctx, 2, "q", es.Any, q1),
		r2.queue(ctx, 1, "q", es.Any, q2),
		r2.queue(ctx, 2, "p", es.Any, p2),
	}
	close(r1.release)
	close(r2.release)
	r1.wait(lead1)
	r2.wait(lead2)
	pids := []uint32{(<-r1.sending).pid, (<-r2.sending).pid}
	waitFor(t, func() bool { return waitingForLocks(t, pids...) == 2 })
	unlock()
	for i, out := range outs {
		if o := r1.wait(out); o.err != nil {
			t.Errorf("append %d: %v", i, o.err)
		}
	}
	txs := r1.txIDs()
	if txs[p1.ID] != txs[q1.ID] || txs[p2.ID] != txs[q2.ID] || txs[p1.ID] == txs[p2.ID] {
		t.Errorf("tx_id of P1 %s, Q1 %s, P2 %s, Q2 %s; want P1 and Q1 in one transaction, P2 and Q2 in another",
			txs[p1.ID], txs[q1.ID], txs[p2.ID], txs[q2.ID])
	}
}

// A group notifies subscribers when it commits, as an append alone does.
// The test listens on the store's channel and holds the locks that tell
// appends that a subscriber listens.
func TestGroupCommitNotifies(t *testing.T) {
	t.Parallel()
	r := newGroupRig(t, pgstore.Config{})
	ctx := t.Context()
	listener, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	_, notifyLock := pgstore.LockClasses(r.store)
	if _, err := listener.Exec(ctx, "SELECT pg_advisory_lock_shared($1, k) FROM generate_series(18, 33) AS k", notifyLock); err != nil {
		t.Fatal(err)
	}
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{r.store.Channel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	lead := r.hold()
	// Events with IDs of the store's own: the group appends them with a
	// statement that leaves notifying to the group.
	x := r.queue(ctx, 1, "x", es.NoStream, es.EventData{Type: "X", Data: []byte(`{}`)})
	y := r.queue(ctx, 2, "y", es.NoStream, es.EventData{Type: "Y", Data: []byte(`{}`)})
	close(r.release)
	for _, out := range []<-chan appendOutcome{lead, x, y} {
		if o := r.wait(out); o.err != nil {
			t.Fatal(o.err)
		}
	}
	if sent := <-r.sending; sent.n != 2 {
		t.Errorf("group size %d; want 2", sent.n)
	}
	// One notification from the first append, one from the group.
	for i := range 2 {
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification %d: %v; want one from the first append and one from the group", i+1, err)
		}
		if n.Channel != r.store.Channel() {
			t.Errorf("notification %d on channel %q; want %q", i+1, n.Channel, r.store.Channel())
		}
	}
}
