package cqrs

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
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

// Defaults of [AggregateConfig].
const (
	MaxAttemptsDefault           = 3
	IdempotencyWindowDefault     = 100
	UnknownOutcomeRetriesDefault = 3
)

// AggregateConfig tunes a handler made with [Aggregate]. The zero value
// works.
type AggregateConfig struct {
	// MaxAttempts caps how many times a command handled with [OnExisting] or
	// [OnAny] is loaded, decided and appended when its appends keep meeting
	// concurrent writes to the same stream; after that the command fails
	// with a [*ConflictError]. 1 means no retry. Commands handled with
	// [OnNew] are never retried. Defaults to MaxAttemptsDefault (3).
	MaxAttempts int
	// IdempotencyWindow is how many of a stream's latest events are searched
	// for the events of an earlier dispatch of a command with the same ID
	// (see [Identified]) when the decision fails or decides nothing, or the
	// append keeps conflicting. Searching costs a read of the stream per 100
	// events, and only in those cases: a command with an ID that the
	// aggregate refuses pays one read. A retry that more events than this
	// have followed is still never appended twice, but gets the error (or
	// the empty result) instead of the original result. When the store says
	// that the command's event IDs are stored already, the whole stream is
	// searched. Commands handled with [OnNew] look at the stream's first
	// events only. Defaults to IdempotencyWindowDefault (100).
	IdempotencyWindow int
	// UnknownOutcomeRetries caps how many times an append whose outcome is
	// unknown (the store returned an error wrapping [es.ErrUnknownOutcome]:
	// the connection broke while the append committed) is retried, with the
	// same event IDs at the same expected version, after waiting 50ms,
	// 100ms, 200ms and so on. After that the command fails with an error
	// that still wraps [es.ErrUnknownOutcome]. Defaults to
	// UnknownOutcomeRetriesDefault (3).
	UnknownOutcomeRetries int
}

// Validate reports every problem with c at once.
func (c AggregateConfig) Validate() error {
	var errs []error
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("cqrs: AggregateConfig.MaxAttempts is %d; want 0 (default) or more", c.MaxAttempts))
	}
	if c.IdempotencyWindow < 0 {
		errs = append(errs, fmt.Errorf("cqrs: AggregateConfig.IdempotencyWindow is %d; want 0 (default) or more", c.IdempotencyWindow))
	}
	if c.UnknownOutcomeRetries < 0 {
		errs = append(errs, fmt.Errorf("cqrs: AggregateConfig.UnknownOutcomeRetries is %d; want 0 (default) or more", c.UnknownOutcomeRetries))
	}
	return errors.Join(errs...)
}

func (c AggregateConfig) withDefaults() AggregateConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = MaxAttemptsDefault
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = IdempotencyWindowDefault
	}
	if c.UnknownOutcomeRetries == 0 {
		c.UnknownOutcomeRetries = UnknownOutcomeRetriesDefault
	}
	return c
}

// Aggregate returns a handler that runs d against the aggregates of repo:
// load (unless d is [OnNew]), decide, and append the events with the
// aggregate's version as the expected version, through [es.Repository.Save]
// so that snapshots are taken as configured.
//
// On a version conflict, a command handled with [OnExisting] or [OnAny] is
// loaded and decided again, up to cfg.MaxAttempts times, and then fails
// with a [*ConflictError]. A decision of no events is a success that appends
// nothing and returns the aggregate's current version with a zero position.
// An error from decide is returned as a [*RejectedError] that names the
// command and the stream and unwraps to it, so errors.Is and errors.As
// still find the decider's own error.
//
// Every event carries [EventMetadata]. When the command has an ID (see
// [Identified]), the i-th event's ID is [EventID](name, id, i) and every
// event carries the command's hash ([MetaCommandHash]), which makes a
// retried command idempotent: the store absorbs a retry that lands where the
// original did, and when a retry fails instead (its events are stored
// elsewhere in the stream, or the aggregate now refuses the command or
// decides nothing), the handler finds the original events in the stream and
// returns their [Result] with no error. A command with the same ID but
// another payload or aggregate gets a [*CommandIDReusedError]. The happy
// path of a command with an ID costs one read of one event, after the
// append, to tell the command's own events from another command's.
//
// An append whose outcome is unknown ([es.ErrUnknownOutcome]) is retried
// with the same event IDs at the same expected version, up to
// cfg.UnknownOutcomeRetries times; commands without an ID get event IDs
// chosen here (version 7 UUIDs) rather than by the store, so that the retry
// can repeat them. See the package documentation.
//
// Aggregate panics if repo is nil, d is the zero Decider or cfg is invalid.
func Aggregate[C any, T es.Aggregate](repo *es.Repository[T], d Decider[C, T], cfg AggregateConfig) Handler[C] {
	name := reflect.TypeFor[C]().String()
	switch {
	case repo == nil:
		panic(fmt.Sprintf("cqrs: aggregate handler for %s: nil repository", name))
	case d.intent == 0:
		panic(fmt.Sprintf("cqrs: aggregate handler for %s: zero Decider; make one with OnNew, OnExisting or OnAny", name))
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	h := &aggregateHandler[C, T]{name: name, repo: repo, d: d, cfg: cfg.withDefaults()}
	return h.handle
}

type aggregateHandler[C any, T es.Aggregate] struct {
	name string
	repo *es.Repository[T]
	d    Decider[C, T]
	cfg  AggregateConfig
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
	c := command{name: h.name, id: s.commandID, stream: stream}
	if c.id != "" {
		hash, err := commandHash(cmd)
		if err != nil {
			return Result{}, fmt.Errorf("cqrs: handle %s: a command with an id must encode as JSON, to compare it with a retry: %w", h.name, err)
		}
		c.hash = hash
		save.Metadata[MetaCommandHash] = hash
		save.EventID = func(i int) uuid.UUID { return EventID(h.name, c.id, i) }
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
			err = &RejectedError{Command: h.name, Stream: stream, Err: err}
			if root.Exists() {
				return h.original(ctx, c, h.window(), err)
			}
			return Result{}, err
		}
		if len(events) == 0 {
			res := Result{Stream: root.Stream, Version: root.Version}
			if !root.Exists() || c.id == "" {
				return res, nil
			}
			// An earlier dispatch may have appended what makes this one
			// decide nothing.
			earlier, found, err := h.earlier(ctx, c, h.window())
			if err != nil || found {
				return earlier, err
			}
			return res, nil
		}
		if c.id == "" {
			// IDs chosen here rather than by the store, so that an append
			// whose outcome is unknown is retried with the same ones.
			ids := make([]uuid.UUID, len(events))
			for i := range ids {
				ids[i] = uuid.Must(uuid.NewV7())
			}
			save.EventID = func(i int) uuid.UUID { return ids[i] }
		}

		res, err := h.save(ctx, root, events, save)
		switch {
		case err == nil && c.id != "":
			return h.verify(ctx, c, res, len(events))
		case err == nil:
			return appendResult(res), nil
		case res.Version > 0:
			// The events are stored; only applying them in memory failed.
			return appendResult(res), fmt.Errorf("cqrs: handle %s: %w", h.name, err)
		case errors.Is(err, es.ErrWrongExpectedVersion) && h.d.intent == intentNew:
			return h.original(ctx, c, 0, &AggregateExistsError{Command: h.name, Stream: stream, Err: err})
		case errors.Is(err, es.ErrWrongExpectedVersion) && attempt < h.cfg.MaxAttempts:
			traceConflictRetry(ctx, stream, attempt, err)
			conflictRetried(ctx)
			continue
		case errors.Is(err, es.ErrWrongExpectedVersion):
			return h.original(ctx, c, h.window(), &ConflictError{Command: h.name, Stream: stream, Attempts: attempt, Err: err})
		case errors.Is(err, es.ErrDuplicateEventID) && c.id != "":
			// The store holds some of the IDs: the earlier dispatch is in
			// this stream, wherever it is, or this ID was used for another
			// aggregate.
			window := -1
			if h.d.intent == intentNew {
				window = 0
			}
			earlier, found, ferr := h.earlier(ctx, c, window)
			var reused *CommandIDReusedError
			switch {
			case errors.As(ferr, &reused):
				reused.Err = err
				return Result{}, reused
			case ferr != nil:
				return Result{}, errors.Join(fmt.Errorf("cqrs: handle %s for %s: %w", h.name, stream, err), ferr)
			case found:
				return earlier, nil
			}
			return Result{}, &CommandIDReusedError{Command: h.name, CommandID: c.id, Stream: stream, Differs: ReusedAggregate, Err: err}
		default:
			return Result{}, fmt.Errorf("cqrs: handle %s for %s: %w", h.name, stream, err)
		}
	}
}

// command is what the handler knows of the command it handles, for the
// idempotency checks.
type command struct {
	name   string // the type name
	id     string // its ID; "" when it has none
	hash   string // see commandHash; "" when it has no ID
	stream string // the stream it names
}

// window is how far back a retried command's events are searched for: the
// idempotency window, or the start of the stream for a command that
// creates it.
func (h *aggregateHandler[C, T]) window() int {
	if h.d.intent == intentNew {
		return 0 // a command that created the stream wrote its first events
	}
	return h.cfg.IdempotencyWindow
}

// original returns the result of an earlier dispatch of c, when it has an
// ID and one is found within window (see findCommand), and otherwise
// failure.
func (h *aggregateHandler[C, T]) original(ctx context.Context, c command, window int, failure error) (Result, error) {
	if c.id == "" {
		return Result{}, failure
	}
	res, found, err := h.earlier(ctx, c, window)
	switch {
	case err != nil && !errors.Is(err, ErrCommandIDReused):
		return Result{}, errors.Join(failure, err)
	case err != nil:
		return Result{}, err
	case !found:
		return Result{}, failure
	}
	return res, nil
}

// earlier looks within window of c's stream (see findCommand) for the events
// an earlier dispatch of a command with c's type and ID appended. It
// returns their result when that command was c, and a
// [*CommandIDReusedError] when it had another payload.
func (h *aggregateHandler[C, T]) earlier(ctx context.Context, c command, window int) (Result, bool, error) {
	first, res, found, err := findCommand(ctx, h.repo.Store(), c.stream, c.name, c.id, window)
	switch {
	case err != nil:
		return Result{}, false, fmt.Errorf("cqrs: look for an earlier dispatch of %s %q: %w", c.name, c.id, err)
	case !found:
		return Result{}, false, nil
	case !sameCommand(first, c.hash):
		return Result{}, false, &CommandIDReusedError{Command: c.name, CommandID: c.id, Stream: c.stream, Differs: ReusedPayload}
	}
	return res, true, nil
}

// verify checks, after a successful append of n events for c, which has an
// ID, that the append stored c's events and was not answered from an
// earlier dispatch of another command with the same ID: the store returns
// the original result for events whose IDs it already holds at that place,
// whatever their content. It reads the first of the n events.
func (h *aggregateHandler[C, T]) verify(ctx context.Context, c command, res es.AppendResult, n int) (Result, error) {
	recs, err := h.repo.Store().ReadStream(ctx, c.stream, es.ReadStreamOptions{From: res.Version - int64(n) + 1, Limit: 1})
	if err != nil {
		return Result{}, fmt.Errorf("cqrs: handle %s for %s: the events are stored, but reading them back to check the command id failed: %w", c.name, c.stream, err)
	}
	if len(recs) == 1 && recs[0].ID == EventID(c.name, c.id, 0) && !sameCommand(recs[0], c.hash) {
		return Result{}, &CommandIDReusedError{Command: c.name, CommandID: c.id, Stream: c.stream, Differs: ReusedPayload}
	}
	return appendResult(res), nil
}

// save saves events with [es.Repository.Save]. While the store says that
// the outcome of the append is unknown (the connection broke while it
// committed), it saves them again, with the same event IDs at the same
// expected version, up to cfg.UnknownOutcomeRetries times: the store
// returns the original result if the first attempt was stored, and stores
// the events once if not. Deciding again instead could apply the command
// twice.
func (h *aggregateHandler[C, T]) save(ctx context.Context, root *es.Root[T], events []any, opts es.SaveOptions) (es.AppendResult, error) {
	res, err := h.repo.Save(ctx, root, events, opts)
	if !errors.Is(err, es.ErrUnknownOutcome) {
		return res, err
	}
	unknown, retries := err, 0
	for ; retries < h.cfg.UnknownOutcomeRetries; retries++ {
		if !backoff.Sleep(ctx, unknownOutcomeDelay<<retries) {
			break
		}
		res, err = h.repo.Save(ctx, root, events, opts)
		switch {
		case err == nil, res.Version > 0,
			errors.Is(err, es.ErrWrongExpectedVersion), // the first attempt was not stored
			errors.Is(err, es.ErrDuplicateEventID), errors.Is(err, es.ErrInvalidEvent):
			return res, err
		}
		// Another unknown outcome, or a failure before anything was sent
		// (the server is still unreachable): the first attempt's outcome is
		// still unknown.
	}
	if !errors.Is(err, es.ErrUnknownOutcome) {
		// The last retry failed before it was sent; the first one's
		// outcome is what is unknown.
		err = fmt.Errorf("%w (last retry: %v)", unknown, err)
	}
	if ctx.Err() != nil {
		return es.AppendResult{}, fmt.Errorf("still unknown after %d retries; %w before the next: %w", retries, ctx.Err(), err)
	}
	return es.AppendResult{}, fmt.Errorf("still unknown after %d retries: %w", retries, err)
}

// unknownOutcomeDelay is the wait before the first retry of an append whose
// outcome is unknown; it doubles for each further retry.
const unknownOutcomeDelay = 50 * time.Millisecond
