package es

import (
	"context"
	"iter"
	"time"
)

// Store is an event store. Implementations must be safe for concurrent use
// and must pass the conformance suite in es/estest. Errors caused by a
// cancelled or expired context wrap ctx.Err().
type Store interface {
	// Append writes events to the end of stream if its current version
	// satisfies expected, atomically: all of them or none. Invalid input
	// returns an error wrapping [ErrInvalidEvent] before anything is written;
	// a failed condition returns a [*VersionConflictError]. Re-appending
	// events that are already stored (same IDs, same order, same place) is a
	// success that returns the original result.
	//
	// When the connection to the server breaks after the append was sent,
	// for example while its transaction commits, the outcome is unknown: the
	// events may be stored although the append failed. A store that can
	// tell returns an error wrapping [ErrUnknownOutcome] then. Do not trust
	// a driver's "safe to retry" label for such an error (pgx may give it to
	// a commit that reached the disk), and do not decide again: retry the
	// same events, with the same IDs (set them; IDs the store assigns differ
	// on each attempt), at the same expected version. The rule above makes
	// that retry return the original result if the first attempt was stored,
	// and store the events once if it was not; a version conflict on the
	// retry means the first attempt was not stored and never will be.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...EventData) (AppendResult, error)

	// ReadStream reads the events of one stream. It returns an error wrapping
	// [ErrStreamNotFound] when the stream has no events. Unlike the global
	// log, a stream read is never held back: it shows every committed append
	// at once, which is what loading an aggregate needs. Reading forwards
	// from past the end returns no records; reading backwards from past the
	// end starts at the last event.
	ReadStream(ctx context.Context, stream string, opts ReadStreamOptions) ([]Record, error)

	// ReadAll reads up to limit events of the global log that come after the
	// position after, in log order. It returns fewer (or none) at the end of
	// the readable log. Events of transactions that may still commit before
	// others are held back until the order can no longer change, so a caller
	// that pages with the position of the last record it got never skips an
	// event. While more events are readable a page is full. A limit <= 0
	// means [BatchSizeDefault].
	ReadAll(ctx context.Context, after Position, limit int) ([]Record, error)

	// Subscribe delivers the global log after opts.After in batches: first
	// what is stored (catch-up), then new events as they are committed (live),
	// each exactly once and in the order of ReadAll; batches are never
	// empty. The sequence stops when
	// the consumer stops ranging or ctx ends (with no error); any other
	// failure is yielded once as the error, after which the sequence stops.
	Subscribe(ctx context.Context, opts SubscribeOptions) iter.Seq2[[]Record, error]

	// Head returns the position of the last event a reader can see, or
	// [Start] when the log is empty.
	Head(ctx context.Context) (Position, error)
}

// BatchSizeDefault is how many records ReadAll and Subscribe return at most
// when the caller does not say.
const BatchSizeDefault = 500

// Direction is the order in which ReadStream returns events.
type Direction uint8

const (
	Forwards  Direction = iota // from lower versions to higher
	Backwards                  // from higher versions to lower
)

// ReadStreamOptions tune [Store.ReadStream]. The zero value reads the whole
// stream forwards.
type ReadStreamOptions struct {
	// Direction defaults to Forwards.
	Direction Direction
	// From is the first version to return, inclusive. 0 means the first event
	// when reading forwards and the last event when reading backwards.
	From int64
	// Limit caps how many events are returned; 0 means no cap.
	Limit int
}

// SubscribeOptions tune [Store.Subscribe].
type SubscribeOptions struct {
	// After is the position to resume from, exclusive: usually a checkpoint.
	// Defaults to Start, the beginning of the log.
	After Position
	// BatchSize caps the records in one batch. Defaults to BatchSizeDefault.
	BatchSize int
}

// Counter is implemented by stores that can count the events of a stretch
// of the global log without reading them. Status and rebuild progress use it
// when a store has one; without it they count by reading, up to a limit, and
// say that what lies beyond is an estimate.
type Counter interface {
	// CountEvents returns how many events of the global log come after the
	// position after, up to and including upTo: exactly the number of
	// records that paging through ReadAll from after would return before
	// passing upTo, when upTo is at most the Head. It returns 0 when upTo
	// is not after after.
	CountEvents(ctx context.Context, after, upTo Position) (int64, error)
}

// BacklogReporter is implemented by stores whose readers can be held back:
// committed events that ReadAll, Subscribe and Head do not show yet because
// a transaction that is still running may commit events before them
// (pgstore).
type BacklogReporter interface {
	// Backlog reports the readable head of the log and the committed events
	// beyond it, from one consistent view of the log.
	Backlog(ctx context.Context) (Backlog, error)
}

// Backlog is what a [BacklogReporter] reports.
type Backlog struct {
	// Head is the position of the last event readers can see, as
	// [Store.Head] returns it.
	Head Position
	// Events counts the committed events after Head that readers cannot
	// see yet; 0 when nothing is held back.
	Events int64
	// Last is the position of the last committed event, Head when Events
	// is 0.
	Last Position
	// Since is when the first held-back event was recorded; zero when
	// Events is 0.
	Since time.Time
}
