package es

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
)

// Aggregate is the write model of one stream. Apply changes the aggregate's
// state with one event that already happened; it must not fail on an event
// that the aggregate itself decided, and it must not do I/O. Decisions
// (validating a command and choosing events) live elsewhere, usually in
// methods that return events, which the cqrs package wires to commands.
type Aggregate interface {
	Apply(event any) error
}

// Root is an aggregate loaded from its stream: the state and the version it
// reflects, which the next save expects.
type Root[T Aggregate] struct {
	ID      string
	Stream  string
	Version int64 // the stream version State includes; 0 for a new aggregate
	State   T

	snapshotVersion int64
}

// Exists reports whether the aggregate has any stored events.
func (r *Root[T]) Exists() bool { return r.Version > 0 }

// RepositoryConfig tunes a [Repository]. The zero value works.
type RepositoryConfig struct {
	// StreamPrefix is put before the aggregate ID to form its stream name,
	// such as "order-". Defaults to "".
	StreamPrefix string
	// Snapshots stores snapshots. Defaults to nil: no snapshots.
	Snapshots SnapshotStore
	// SnapshotEvery takes a snapshot after a save once this many events have
	// been stored since the last snapshot. Defaults to 0: never. It needs
	// Snapshots and an aggregate whose state round-trips through JSON.
	SnapshotEvery int
	// SnapshotRevision names the JSON shape of the aggregate's state.
	// Snapshots of another revision are ignored, so change it whenever the
	// aggregate's fields change. Defaults to "1".
	SnapshotRevision string
	// Logger reports snapshot failures, which never fail a save. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem with c at once.
func (c RepositoryConfig) Validate() error {
	var errs []error
	if c.SnapshotEvery < 0 {
		errs = append(errs, fmt.Errorf("es: RepositoryConfig.SnapshotEvery is %d; want 0 (off) or more", c.SnapshotEvery))
	}
	if c.SnapshotEvery > 0 && c.Snapshots == nil {
		errs = append(errs, errors.New("es: RepositoryConfig.SnapshotEvery is set but Snapshots is nil"))
	}
	return errors.Join(errs...)
}

func (c RepositoryConfig) withDefaults() RepositoryConfig {
	if c.SnapshotRevision == "" {
		c.SnapshotRevision = "1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Repository loads aggregates of type T by replaying their streams and saves
// the events they decide with optimistic concurrency.
type Repository[T Aggregate] struct {
	store    Store
	registry *Registry
	newAgg   func(id string) T
	cfg      RepositoryConfig
}

// NewRepository returns a repository for aggregates made by newAggregate,
// which must return a fresh, empty aggregate for an ID. It panics on an
// invalid config, which is a programming error.
func NewRepository[T Aggregate](store Store, registry *Registry, newAggregate func(id string) T, cfg RepositoryConfig) *Repository[T] {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Repository[T]{store: store, registry: registry, newAgg: newAggregate, cfg: cfg.withDefaults()}
}

// Store returns the store the repository writes to.
func (r *Repository[T]) Store() Store { return r.store }

// Registry returns the registry the repository encodes and decodes with.
func (r *Repository[T]) Registry() *Registry { return r.registry }

// StreamFor returns the stream name of the aggregate with the given ID.
func (r *Repository[T]) StreamFor(id string) string { return r.cfg.StreamPrefix + id }

// New returns a root for a new aggregate with the given ID, at version 0,
// without reading the store. Saving it expects the stream to have no events,
// so it fails with a [*VersionConflictError] if the aggregate already exists.
// It is for commands that create an aggregate, which need no read.
func (r *Repository[T]) New(id string) *Root[T] {
	return &Root[T]{ID: id, Stream: r.StreamFor(id), State: r.newAgg(id)}
}

// Load returns the aggregate with the given ID, built from its latest usable
// snapshot and the events after it. An aggregate with no events is returned
// at version 0 (see [Root.Exists]); it is not an error.
func (r *Repository[T]) Load(ctx context.Context, id string) (*Root[T], error) {
	if id == "" {
		return nil, errors.New("es: load aggregate: empty id")
	}
	root := r.New(id)
	if r.cfg.Snapshots != nil {
		if err := r.loadSnapshot(ctx, root); err != nil {
			return nil, err
		}
	}
	for {
		recs, err := r.store.ReadStream(ctx, root.Stream, ReadStreamOptions{From: root.Version + 1, Limit: BatchSizeDefault})
		if errors.Is(err, ErrStreamNotFound) {
			if root.Version > 0 {
				return nil, fmt.Errorf("es: load %s: snapshot at version %d but the stream has no events", root.Stream, root.Version)
			}
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("es: load %s: %w", root.Stream, err)
		}
		for _, rec := range recs {
			if err := r.apply(root, rec); err != nil {
				return nil, err
			}
		}
		if len(recs) < BatchSizeDefault {
			return root, nil
		}
	}
}

func (r *Repository[T]) loadSnapshot(ctx context.Context, root *Root[T]) error {
	snap, err := r.cfg.Snapshots.LoadSnapshot(ctx, root.Stream)
	if errors.Is(err, ErrSnapshotNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("es: load snapshot of %s: %w", root.Stream, err)
	}
	if snap.Revision != r.cfg.SnapshotRevision {
		return nil
	}
	state := r.newAgg(root.ID)
	if err := json.Unmarshal(snap.Data, state); err != nil {
		// A snapshot that no longer fits is only an optimisation lost:
		// replay from the start instead.
		r.cfg.Logger.WarnContext(ctx, "es: ignoring snapshot that does not decode",
			slog.String("stream", root.Stream), slog.Int64("version", snap.Version), slog.Any("error", err))
		return nil
	}
	root.State, root.Version, root.snapshotVersion = state, snap.Version, snap.Version
	return nil
}

func (r *Repository[T]) apply(root *Root[T], rec Record) error {
	if rec.Version != root.Version+1 {
		return fmt.Errorf("es: load %s: expected version %d next, store returned %d", root.Stream, root.Version+1, rec.Version)
	}
	event, err := r.registry.Decode(rec)
	if err != nil {
		return fmt.Errorf("es: load %s: %w", root.Stream, err)
	}
	if err := root.State.Apply(event); err != nil {
		return fmt.Errorf("es: load %s: apply %s@%d: %w", root.Stream, rec.Type, rec.Version, err)
	}
	root.Version = rec.Version
	return nil
}

// SaveOptions tune one [Repository.Save].
type SaveOptions struct {
	// Metadata is stored with every event.
	Metadata Metadata
	// EventID, when set, returns the ID of the i-th event; deterministic IDs
	// make a retried save idempotent. Defaults to IDs assigned by the store.
	EventID func(i int) uuid.UUID
}

// Save appends events to the aggregate's stream, expecting the version the
// root was loaded at, then applies them to root.State and advances
// root.Version. On a conflict it returns a [*VersionConflictError] and leaves
// root unchanged. Saving no events is a no-op that returns the root's
// current version.
func (r *Repository[T]) Save(ctx context.Context, root *Root[T], events []any, opts SaveOptions) (AppendResult, error) {
	if len(events) == 0 {
		return AppendResult{Stream: root.Stream, Version: root.Version}, nil
	}
	data := make([]EventData, len(events))
	for i, e := range events {
		d, err := r.registry.Encode(e, opts.Metadata)
		if err != nil {
			return AppendResult{}, fmt.Errorf("es: save %s: event %d: %w", root.Stream, i, err)
		}
		if opts.EventID != nil {
			d.ID = opts.EventID(i)
		}
		data[i] = d
	}
	res, err := r.store.Append(ctx, root.Stream, Exact(root.Version), data...)
	if err != nil {
		return AppendResult{}, err
	}
	for i, e := range events {
		if err := root.State.Apply(e); err != nil {
			return res, fmt.Errorf("es: save %s: events stored, but applying event %d to the in-memory state failed: %w", root.Stream, i, err)
		}
	}
	root.Version = res.Version
	r.maybeSnapshot(ctx, root)
	return res, nil
}

func (r *Repository[T]) maybeSnapshot(ctx context.Context, root *Root[T]) {
	if r.cfg.SnapshotEvery <= 0 || root.Version-root.snapshotVersion < int64(r.cfg.SnapshotEvery) {
		return
	}
	data, err := json.Marshal(root.State)
	if err == nil {
		err = r.cfg.Snapshots.SaveSnapshot(ctx, Snapshot{
			Stream: root.Stream, Version: root.Version, Revision: r.cfg.SnapshotRevision,
			Data: data, TakenAt: time.Now().UTC(),
		})
	}
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "es: snapshot failed; the save stands",
			slog.String("stream", root.Stream), slog.Int64("version", root.Version), slog.Any("error", err))
		return
	}
	root.snapshotVersion = root.Version
}
