package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/es"
)

// Append implements [es.Store]. It usually takes one round trip: a single
// statement that locks the stream, checks its version and inserts. When that
// statement cannot decide (a conflict, an event ID that is already stored, a
// concurrent writer) the append function installed by the migrations
// decides, in a second round trip. Appends made while another append of
// the store is in flight are sent together when it is done, in one round
// trip and one commit (group commit, see the package documentation and
// [Config.GroupCommitMax]); each gets its own result.
//
// Each statement commits on its own, or with its group. When the
// connection breaks after one was sent and before its answer arrived (the
// server process was terminated during the commit, the network failed, the
// context ended and pgx closed the connection), Append returns an [*es.UnknownOutcomeError]:
// the events may be stored. Retry them with the same IDs at the same
// expected version, as [es.Store] describes; the cqrs package does that for
// the commands it handles. An error the server reports for the statement
// itself (a conflict, bad input) means nothing was stored. An append whose
// ctx ends while it waits for a group returns ctx's cause and writes
// nothing; once its group was taken, it returns an
// [*es.UnknownOutcomeError].
func (s *Store) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (res es.AppendResult, err error) {
	ctx, span := s.startAppend(ctx, stream, len(events))
	defer func() { endAppend(span, res, err) }()
	start := time.Now()
	a, err := newAppendArgs(stream, expected, events, s.limits)
	if err != nil {
		s.metrics.appended(ctx, len(events), start, false, err)
		return es.AppendResult{}, err
	}
	if s.cfg.GroupCommitMax > 1 {
		res, err = s.appendGrouped(ctx, a)
	} else {
		res, err = s.appendAlone(ctx, a)
	}
	// a.stored is set by whoever sent the append, which is done when err
	// is nil.
	s.metrics.appended(ctx, len(events), start, err == nil && a.stored, err)
	return res, err
}

// appendAlone sends one append on a connection of its own.
func (s *Store) appendAlone(ctx context.Context, a *appendArgs) (es.AppendResult, error) {
	stream := a.stream
	// One connection for both round trips, acquired first: a failure to get
	// one means nothing was sent.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return es.AppendResult{}, fmt.Errorf("pgstore: append to %s: %w", stream, &connError{err})
	}
	defer conn.Release()
	res, ok, err := s.appendFast(ctx, conn, a)
	if ok || err != nil {
		return res, err
	}
	for try := 0; ; try++ {
		res, err := s.appendFunc(ctx, conn, a, true)
		// The stream's lock keeps appends apart, but not Import: when an
		// import created the stream meanwhile, look again.
		if try < 2 && isUniqueViolation(err, "events_pkey") {
			continue
		}
		return res, err
	}
}

// AppendTx appends like [Store.Append], inside the caller's transaction, so
// that events and other rows commit together. The events become visible, and
// subscribers are notified, when tx commits.
//
// A version conflict, a duplicate event ID and an idempotent retry are
// decided without raising an error in the database, so tx stays usable after
// them (the caller may still roll back). Other errors abort tx.
//
// Whether the events are stored is decided by tx's commit, which the caller
// makes. When the connection breaks during that commit, its outcome is
// unknown, whatever the error says: pgx may label a commit that reached the
// disk as safe to retry (pgconn.SafeToRetry). To retry such a transaction
// safely, give the events IDs of your own and append the same IDs at the
// same expected version again: if the first commit went through, the
// append returns the original result and writes nothing (see [es.Store]),
// and the rest of the transaction must be as idempotent.
//
// The append locks the stream until tx ends, and while tx is open it holds
// back every reader of the global log (see the package documentation), so
// keep it short.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, stream string, expected es.ExpectedVersion, events ...es.EventData) (res es.AppendResult, err error) {
	ctx, span := s.startAppend(ctx, stream, len(events))
	defer func() { endAppend(span, res, err) }()
	start := time.Now()
	a, err := newAppendArgs(stream, expected, events, s.limits)
	if err != nil {
		s.metrics.appended(ctx, len(events), start, false, err)
		return es.AppendResult{}, err
	}
	// No debounced notification: tx may stay open for long, and the
	// appends that leave notifying to it would wait for it.
	res, err = s.appendFunc(ctx, tx, a, false)
	s.metrics.appended(ctx, len(events), start, err == nil && a.stored, err)
	return res, err
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Codes of the append function's o_status.
const (
	statusAppended  = 0
	statusStored    = 1
	statusConflict  = 2
	statusDuplicate = 3
)

// appendArgs is a validated append, encoded for the database.
type appendArgs struct {
	stream   string
	expected es.ExpectedVersion
	events   []es.EventData
	kind     int16 // see expectedArgs
	version  int64
	// min and max are the lowest and highest stream version the expected
	// version allows, for the fast statement.
	min, max int64
	// key is the stream's advisory lock key; its low four bits pick the
	// stream's notification locks (see notify.go).
	key   int32
	slot  int32
	check bool // some ID came from the caller
	// stored is set when the append function found the events stored
	// already: an idempotent retry.
	stored bool
	size   int // bytes of data and metadata, all events together
	// ids are plain arrays: pgx encodes those in binary, but a uuid.UUID
	// through its driver.Valuer, as text.
	ids      [][16]byte
	types    []string
	data     [][]byte
	metadata [][]byte
	// one backs the slices above for the common single-event append, which
	// saves allocating them.
	one struct {
		id       [1][16]byte
		typ      [1]string
		data     [1][]byte
		metadata [1][]byte
	}
}

func newAppendArgs(stream string, expected es.ExpectedVersion, events []es.EventData, limits es.SizeLimits) (*appendArgs, error) {
	if err := es.ValidateAppend(stream, events); err != nil {
		return nil, err
	}
	if err := limits.Check(stream, events); err != nil {
		return nil, err
	}
	a := &appendArgs{stream: stream, expected: expected, events: events}
	if len(events) == 1 {
		a.ids, a.types, a.data, a.metadata = a.one.id[:], a.one.typ[:], a.one.data[:], a.one.metadata[:]
	} else {
		a.ids = make([][16]byte, len(events))
		a.types = make([]string, len(events))
		a.data = make([][]byte, len(events))
		a.metadata = make([][]byte, len(events))
	}
	a.kind, a.version = expectedArgs(expected)
	a.min, a.max = expectedRange(expected)
	a.key = streamKey(stream)
	a.slot = a.key & 15
	for i, e := range events {
		if e.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("pgstore: append to %s: new event id: %w", stream, err)
			}
			a.ids[i] = id
		} else {
			a.ids[i] = e.ID
			a.check = true
		}
		a.types[i] = e.Type
		a.data[i] = e.Data
		md, err := encodeMetadata(e.Metadata)
		if err != nil {
			return nil, &es.InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "metadata: " + err.Error()}
		}
		a.metadata[i] = md
		a.size += len(e.Data) + len(md)
	}
	return a, nil
}

// appendFast tries the single-statement append. ok is false when the
// statement inserted nothing (the expected version did not match what it saw)
// or hit a unique violation (a stored event ID, or a snapshot taken before
// another writer released the stream): the append function must decide.
func (s *Store) appendFast(ctx context.Context, q querier, a *appendArgs) (res es.AppendResult, ok bool, err error) {
	var row pgx.Row
	if len(a.events) == 1 {
		row = q.QueryRow(ctx, s.q.appendOne, a.stream, a.min, a.max, a.ids[0], a.types[0], a.data[0], a.metadata[0], a.key, a.slot)
	} else {
		row = q.QueryRow(ctx, s.q.appendMany, a.stream, a.min, a.max, a.ids, a.types, a.data, a.metadata, a.key, a.slot)
	}
	var prepare int64
	res.Stream = a.stream
	err = row.Scan(&res.Position.Commit, &prepare, &res.Version, nil)
	switch {
	case err == nil:
		res.Position.Prepare = uint64(prepare)
		return res, true, nil
	case errors.Is(err, pgx.ErrNoRows), isUniqueViolation(err, ""):
		return es.AppendResult{}, false, nil
	}
	return es.AppendResult{}, false, appendError(a.stream, err, true)
}

// appendFunc appends with the append function. debounce: see notify.go;
// it is false only in a caller's transaction (AppendTx), whose commit
// decides the outcome.
func (s *Store) appendFunc(ctx context.Context, q querier, a *appendArgs, debounce bool) (es.AppendResult, error) {
	var (
		status   int16
		actual   *int64
		commit   *uint64
		position *int64
		dupID    *uuid.UUID
	)
	err := q.QueryRow(ctx, s.q.append, a.stream, a.key, a.kind, a.version, a.check, debounce, a.ids, a.types, a.data, a.metadata).
		Scan(&status, &actual, &commit, &position, &dupID)
	if err != nil {
		return es.AppendResult{}, appendError(a.stream, err, debounce)
	}
	return appendStatus(a, status, actual, commit, position, dupID)
}

// appendStatus turns what the append function returned into the append's
// result or error.
func appendStatus(a *appendArgs, status int16, actual *int64, commit *uint64, position *int64, dupID *uuid.UUID) (es.AppendResult, error) {
	res := es.AppendResult{Stream: a.stream}
	a.stored = status == statusStored
	if actual != nil {
		res.Version = *actual
	}
	switch status {
	case statusAppended, statusStored:
		res.Position = es.Position{Commit: *commit, Prepare: uint64(*position)}
		return res, nil
	case statusConflict:
		return es.AppendResult{}, &es.VersionConflictError{Stream: a.stream, Expected: a.expected, Actual: res.Version}
	case statusDuplicate:
		return es.AppendResult{}, &es.DuplicateEventIDError{Stream: a.stream, ID: *dupID}
	}
	return es.AppendResult{}, fmt.Errorf("pgstore: append to %s: unexpected status %d from the append function", a.stream, status)
}

// isUniqueViolation reports whether err is a unique violation of the
// constraint, or of any constraint when constraint is "".
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation && (constraint == "" || pgErr.ConstraintName == constraint)
}

// expectedArgs encodes an expected version for the append function.
func expectedArgs(e es.ExpectedVersion) (kind int16, version int64) {
	switch {
	case e.IsAny():
		return 0, 0
	case e.IsStreamExists():
		return 2, 0
	}
	v, _ := e.Version()
	if v == 0 {
		return 1, 0 // no stream
	}
	return 3, v
}

// expectedRange returns the lowest and highest stream version e allows.
func expectedRange(e es.ExpectedVersion) (lo, hi int64) {
	switch {
	case e.IsAny():
		return 0, math.MaxInt64
	case e.IsStreamExists():
		return 1, math.MaxInt64
	}
	v, _ := e.Version()
	return v, v
}

// streamKey is the stream's advisory lock key: the 32-bit FNV-1a hash of its
// ID.
func streamKey(stream string) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(stream); i++ {
		h ^= uint32(stream[i])
		h *= 16777619
	}
	return int32(h)
}

// appendError turns an error from the append statement into the error to
// return: data exceptions become [*es.InvalidEventError], a unique violation
// of the event ID (a concurrent append of the same ID to another stream)
// becomes [*es.DuplicateEventIDError]. A broken connection becomes an
// [*es.UnknownOutcomeError] when the statement commits by itself (commits),
// and otherwise (in the caller's transaction, which cannot commit now) a
// plain error; both describe the failure without pgx's wrapping.
func appendError(stream string, err error, commits bool) error {
	if !refused(err) {
		if commits {
			return &es.UnknownOutcomeError{Stream: stream, Err: &connError{err}}
		}
		return fmt.Errorf("pgstore: append to %s: %w", stream, &connError{err})
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == pgerrcode.UniqueViolation && pgErr.ConstraintName == "events_event_id_key":
			return &es.DuplicateEventIDError{Stream: stream, ID: idFromDetail(pgErr.Detail)}
		case pgerrcode.IsDataException(pgErr.Code): // input PostgreSQL cannot store
			return &es.InvalidEventError{Stream: stream, Index: -1, Reason: "refused by PostgreSQL: " + pgErr.Message}
		}
	}
	return fmt.Errorf("pgstore: append to %s: %w", stream, err)
}

// idFromDetail reads the event ID from a unique violation's detail,
// "Key (event_id)=(…) already exists.".
func idFromDetail(detail string) uuid.UUID {
	_, rest, ok := strings.Cut(detail, "=(")
	if !ok {
		return uuid.Nil
	}
	id, _, _ := strings.Cut(rest, ")")
	u, _ := uuid.Parse(id)
	return u
}
