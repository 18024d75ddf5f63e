package cqrs

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// intent is what a Decider expects of the aggregate a command names.
type intent uint8

const (
	intentNew intent = iota + 1
	intentExisting
	intentAny
)

// Decider says how commands of type C act on aggregates of type T: which
// aggregate a command names, what the command expects of it (see [OnNew],
// [OnExisting] and [OnAny]) and the decision, which returns the events to
// append or an error. It holds no store, so the same value is wired to a
// repository with [Aggregate] and tested with the cqrstest package.
//
// A decide function must not write anything itself: it may be called more
// than once for one command when a concurrent write forces a retry.
type Decider[C any, T es.Aggregate] struct {
	intent intent
	id     func(C) string
	decide func(context.Context, T, C) ([]any, error)
}

// OnNew returns a Decider for commands that create an aggregate, such as
// PlaceOrder. Nothing is loaded: decide gets a fresh aggregate, and the
// events are appended only if the stream has none yet (expected version
// [es.NoStream]). If it has, the command fails with an
// [*AggregateExistsError]; it is not retried.
//
// id returns the ID of the aggregate the command names; decide returns the
// events to append, or an error that reaches the caller.
func OnNew[C any, T es.Aggregate](id func(cmd C) string, decide func(ctx context.Context, state T, cmd C) ([]any, error)) Decider[C, T] {
	return newDecider(intentNew, id, decide)
}

// OnExisting returns a Decider for commands that change an aggregate that
// must exist, such as AddItem. The aggregate is loaded; if its stream has no
// events the command fails with an [*AggregateNotFoundError] before decide
// is called. See [OnNew] for id and decide, and [Aggregate] for retries.
func OnExisting[C any, T es.Aggregate](id func(cmd C) string, decide func(ctx context.Context, state T, cmd C) ([]any, error)) Decider[C, T] {
	return newDecider(intentExisting, id, decide)
}

// OnAny returns a Decider for commands that create or change an aggregate,
// such as an upsert. The aggregate is loaded; if it has no events, decide
// gets a fresh one, as the repository's constructor makes it, and tells the
// cases apart by its state. See [OnNew] for id and decide, and [Aggregate]
// for retries.
func OnAny[C any, T es.Aggregate](id func(cmd C) string, decide func(ctx context.Context, state T, cmd C) ([]any, error)) Decider[C, T] {
	return newDecider(intentAny, id, decide)
}

func newDecider[C any, T es.Aggregate](in intent, id func(C) string, decide func(context.Context, T, C) ([]any, error)) Decider[C, T] {
	if id == nil || decide == nil {
		panic(fmt.Sprintf("cqrs: decider for %s: nil id or decide function", reflect.TypeFor[C]()))
	}
	return Decider[C, T]{intent: in, id: id, decide: decide}
}

// AggregateID returns the ID of the aggregate cmd names.
func (d Decider[C, T]) AggregateID(cmd C) string { return d.id(cmd) }

// Defaults of [AggregateOptions].
const (
	DefaultMaxAttempts       = 3
	DefaultIdempotencyWindow = 100
)

// AggregateOptions tune a handler made with [Aggregate]. The zero value
// works.
type AggregateOptions struct {
	// MaxAttempts caps how many times a command handled with [OnExisting] or
	// [OnAny] is loaded, decided and appended when its appends keep meeting
	// concurrent writes to the same stream; after that the command fails
	// with a [*ConflictError]. 1 means no retry. Commands handled with
	// [OnNew] are never retried. Defaults to DefaultMaxAttempts (3).
	MaxAttempts int
	// IdempotencyWindow is how many of a stream's latest events are searched
	// for the events of an earlier dispatch of a command with the same ID
	// (see [Identified]) when the append or the decision fails. Searching
	// costs a read of the stream per 100 events, and only on those failures:
	// a command with an ID that the aggregate refuses pays one read. A retry
	// that more events than this have followed is still never appended
	// twice, but gets the error instead of the original result. Commands
	// handled with [OnNew] look at the stream's first events only. Defaults
	// to DefaultIdempotencyWindow (100).
	IdempotencyWindow int
}

// Validate reports every problem with o at once.
func (o AggregateOptions) Validate() error {
	var errs []error
	if o.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("cqrs: AggregateOptions.MaxAttempts is %d; want 0 (default) or more", o.MaxAttempts))
	}
	if o.IdempotencyWindow < 0 {
		errs = append(errs, fmt.Errorf("cqrs: AggregateOptions.IdempotencyWindow is %d; want 0 (default) or more", o.IdempotencyWindow))
	}
	return errors.Join(errs...)
}

func (o AggregateOptions) withDefaults() AggregateOptions {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.IdempotencyWindow == 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	return o
}

// Aggregate returns a handler that runs d against the aggregates of repo:
// load (unless d is [OnNew]), decide, and append the events with the
// aggregate's version as the expected version, through [es.Repository.Save]
// so that snapshots are taken as configured.
//
// On a version conflict, a command handled with [OnExisting] or [OnAny] is
// loaded and decided again, up to opts.MaxAttempts times, and then fails
// with a [*ConflictError]. A decision of no events is a success that appends
// nothing and returns the aggregate's current version with a zero position.
// An error from decide is returned wrapped with the command's name, so
// errors.Is and errors.As still find it.
//
// Every event carries [EventMetadata]. When the command has an ID (see
// [Identified]), the i-th event's ID is [EventID](name, id, i), which makes a
// retried command idempotent: the store absorbs a retry that lands where the
// original did, and when a retry fails instead (its events are stored
// elsewhere in the stream, or the aggregate now refuses the command), the
// handler finds the original events in the stream and returns their
// [Result] with no error. The happy path costs nothing extra.
//
// Aggregate panics if repo is nil, d is the zero Decider or opts is invalid.
func Aggregate[C any, T es.Aggregate](repo *es.Repository[T], d Decider[C, T], opts AggregateOptions) Handler[C] {
	name := reflect.TypeFor[C]().String()
	switch {
	case repo == nil:
		panic(fmt.Sprintf("cqrs: aggregate handler for %s: nil repository", name))
	case d.intent == 0:
		panic(fmt.Sprintf("cqrs: aggregate handler for %s: zero Decider; make one with OnNew, OnExisting or OnAny", name))
	}
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	h := &aggregateHandler[C, T]{name: name, repo: repo, d: d, opts: opts.withDefaults()}
	return h.handle
}

type aggregateHandler[C any, T es.Aggregate] struct {
	name string
	repo *es.Repository[T]
	d    Decider[C, T]
	opts AggregateOptions
}

func (h *aggregateHandler[C, T]) handle(ctx context.Context, cmd C) (Result, error) {
	s := scopeFrom(ctx)
	if s == nil || s.command != h.name {
		// Called directly rather than through a Bus.
		s = newScope(ctx, h.name, commandID(cmd))
		ctx = context.WithValue(ctx, scopeKey{}, s)
	}
	id := h.d.id(cmd)
	if id == "" {
		return Result{}, &ValidationError{Command: h.name, Err: errors.New("the aggregate id is empty")}
	}
	stream := h.repo.StreamFor(id)
	save := es.SaveOptions{Metadata: EventMetadata(ctx)}
	if s.commandID != "" {
		save.EventID = func(i int) uuid.UUID { return EventID(h.name, s.commandID, i) }
	}

	for attempt := 1; ; attempt++ {
		var root *es.Root[T]
		if h.d.intent == intentNew {
			root = h.repo.New(id)
		} else {
			var err error
			if root, err = h.repo.Load(ctx, id); err != nil {
				return Result{}, fmt.Errorf("cqrs: handle %s: %w", h.name, err)
			}
			if h.d.intent == intentExisting && !root.Exists() {
				return Result{}, &AggregateNotFoundError{Command: h.name, Stream: stream}
			}
		}

		events, err := h.d.decide(ctx, root.State, cmd)
		if err != nil {
			err = fmt.Errorf("cqrs: handle %s for %s: %w", h.name, stream, err)
			if root.Exists() {
				return h.original(ctx, s, stream, err)
			}
			return Result{}, err
		}
		if len(events) == 0 {
			return Result{Stream: root.Stream, Version: root.Version}, nil
		}

		res, err := h.repo.Save(ctx, root, events, save)
		switch {
		case err == nil:
			return appendResult(res), nil
		case res.Version > 0:
			// The events are stored; only applying them in memory failed.
			return appendResult(res), fmt.Errorf("cqrs: handle %s: %w", h.name, err)
		case errors.Is(err, es.ErrWrongExpectedVersion) && h.d.intent == intentNew:
			return h.original(ctx, s, stream, &AggregateExistsError{Command: h.name, Stream: stream, Err: err})
		case errors.Is(err, es.ErrWrongExpectedVersion) && attempt < h.opts.MaxAttempts:
			continue
		case errors.Is(err, es.ErrWrongExpectedVersion):
			return h.original(ctx, s, stream, &ConflictError{Command: h.name, Stream: stream, Attempts: attempt, Err: err})
		case errors.Is(err, es.ErrDuplicateEventID):
			return h.original(ctx, s, stream, fmt.Errorf("cqrs: handle %s for %s: command id %q was already used for other events: %w", h.name, stream, s.commandID, err))
		default:
			return Result{}, fmt.Errorf("cqrs: handle %s for %s: %w", h.name, stream, err)
		}
	}
}

// original looks, when the command has an ID, for the events an earlier
// dispatch of it appended to stream, and returns their result with no error.
// Otherwise it returns failure.
func (h *aggregateHandler[C, T]) original(ctx context.Context, s *scope, stream string, failure error) (Result, error) {
	if s.commandID == "" {
		return Result{}, failure
	}
	window := h.opts.IdempotencyWindow
	if h.d.intent == intentNew {
		window = 0 // a command that created the stream wrote its first events
	}
	res, found, err := findCommand(ctx, h.repo.Store(), stream, h.name, s.commandID, window)
	switch {
	case err != nil:
		return Result{}, errors.Join(failure, fmt.Errorf("cqrs: look for an earlier dispatch of %s %q: %w", h.name, s.commandID, err))
	case !found:
		return Result{}, failure
	}
	return res, nil
}
