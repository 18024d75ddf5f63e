package pgsink

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Defaults for [Config].
const (
	SchemaDefault     = "strata"
	LeaseCheckDefault = time.Second
)

// Config tunes a [Sink]. The zero value works.
type Config struct {
	// Schema holds the sink's tables: checkpoints, dead letters, rebuilds.
	// Defaults to "strata".
	Schema string
	// ReadSchema holds the projections' read-model tables, as named by
	// [Tx.Table]. Defaults to Schema.
	ReadSchema string
	// LeaseCheck is how often the sink pings its lease connection while it
	// holds leases; when a ping fails, every lease on it is lost. Defaults
	// to 1s.
	LeaseCheck time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	for field, v := range map[string]string{"Schema": c.Schema, "ReadSchema": c.ReadSchema} {
		if len(v) > 63 || strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("pgsink: Config.%s %q must be valid UTF-8 of at most 63 bytes without NUL", field, v))
		}
	}
	if c.LeaseCheck < 0 {
		errs = append(errs, fmt.Errorf("pgsink: Config.LeaseCheck is %v; want 0 (default) or more", c.LeaseCheck))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.Schema = cmp.Or(c.Schema, SchemaDefault)
	c.ReadSchema = cmp.Or(c.ReadSchema, c.Schema)
	c.LeaseCheck = cmp.Or(c.LeaseCheck, LeaseCheckDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Sink keeps PostgreSQL read models and their checkpoints. It is a
// [projections.Sink] whose handlers get a [*Tx], a [projections.Locker]
// with advisory-lock leases, and a [projections.Checkpoints].
type Sink struct {
	pool    *pgxpool.Pool
	cfg     Config
	schema  string // quoted
	channel string // of checkpoint notifications
	// lockClass is the first key of the checkpoints' advisory locks (see
	// lockCheckpoint).
	lockClass int32
	q         queries
	leases    leases
}

var (
	_ projections.Sink[*Tx] = (*Sink)(nil)
	_ projections.Locker    = (*Sink)(nil)

	_ projections.CheckpointWatcher = (*Sink)(nil)
)

// New returns a sink on pool, which the caller owns. Call [Sink.Migrate]
// before first use. New panics if cfg is invalid or pool is nil.
func New(pool *pgxpool.Pool, cfg Config) *Sink {
	if pool == nil {
		panic("pgsink: New: nil pool")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &Sink{pool: pool, cfg: cfg, schema: pgx.Identifier{cfg.Schema}.Sanitize(), channel: channelName(cfg.Schema),
		lockClass: lockClass("strata/pgsink/checkpoints/" + cfg.Schema)}
	s.q = newQueries(s.expand, s.channel)
	return s
}

// Pool returns the sink's pool.
func (s *Sink) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema of the sink's tables.
func (s *Sink) Schema() string { return s.cfg.Schema }

func (s *Sink) expand(sql string) string {
	return strings.ReplaceAll(sql, "{{schema}}", s.schema)
}

type queries struct {
	ensure, lock, at, advance, insertDead, read, setState string
}

// lockClass derives the first key of a family of advisory locks from a name.
func lockClass(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32())
}

// lockCheckpoint takes, in tx, the transaction-level advisory lock on the
// checkpoint of name, keyed by the sink's schema and hashtext(name). A
// batch holds it from its start to its commit, and every other writer of
// the checkpoint takes it first, so that they exclude each other as a row
// lock would. It is not a row lock because a row lock gives the
// transaction an ID at once, and the readers of a pgstore log wait for
// every transaction with an ID older than the events they read: a batch
// whose handler waits on Elasticsearch or Kafka would hold back every
// projection of the database. A batch's transaction gets an ID only when
// it writes, at the latest when it moves the checkpoint just before its
// commit. The lock is taken in a statement of its own: in READ COMMITTED,
// the statements after it see what the previous holder committed.
func (s *Sink) lockCheckpoint(ctx context.Context, tx pgx.Tx, name string) error {
	if _, err := tx.Exec(ctx, s.q.lock, s.lockClass, name); err != nil {
		return fmt.Errorf("lock the checkpoint: %w", err)
	}
	return nil
}

// locked runs fn in a transaction that holds the lock on the checkpoint
// of name, and commits it when fn returns nil.
func (s *Sink) locked(ctx context.Context, name string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.lockCheckpoint(ctx, tx, name); err != nil {
			return err
		}
		return fn(tx)
	})
}

func newQueries(expand func(string) string, channel string) queries {
	notify := `SELECT pg_catalog.pg_notify(` + quoteLiteral(channel) + `, name) FROM c`
	return queries{
		ensure: expand(`INSERT INTO {{schema}}.projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`),
		lock:   `SELECT pg_catalog.pg_advisory_xact_lock($1::int4, pg_catalog.hashtext($2))`,
		at: expand(`SELECT commit_pos, prepare_pos, state FROM {{schema}}.projection_checkpoints
			WHERE name = $1`),
		// Creates the row of a first batch, so that the batch writes
		// nothing before it ends; moves the checkpoint only from $5, $6
		// (where the batch found it), so that a writer that does not take
		// the lock (an older version of the sink) is not overwritten.
		advance: expand(`WITH c AS (INSERT INTO {{schema}}.projection_checkpoints AS cp
			    (name, commit_pos, prepare_pos, failure) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE
			SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, updated_at = now(),
			    -- a batch that commits ends a retry (see SetRetrying)
			    failure = coalesce(excluded.failure, CASE WHEN cp.failure @> '{"Retrying": true}' THEN NULL ELSE cp.failure END)
			WHERE cp.commit_pos = $5 AND cp.prepare_pos = $6 RETURNING name) ` + notify),
		insertDead: expand(`INSERT INTO {{schema}}.projection_dead_letters
			(projection, event_id, stream_id, stream_version, commit_pos, prepare_pos, type, data, metadata, recorded_at, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT DO NOTHING`),
		read: expand(`SELECT commit_pos, prepare_pos, state, failure, updated_at
			FROM {{schema}}.projection_checkpoints WHERE name = $1`),
		setState: expand(`WITH c AS (INSERT INTO {{schema}}.projection_checkpoints AS cp (name, state, failure) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE
			SET state = excluded.state,
			    failure = CASE WHEN excluded.failure IS NOT NULL THEN excluded.failure
			                   WHEN excluded.state = 'running' THEN NULL ELSE cp.failure END,
			    updated_at = now()
			RETURNING name) ` + notify),
	}
}

// Checkpoint implements [projections.Checkpoints].
func (s *Sink) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	return s.checkpoint(ctx, s.pool, name)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Sink) checkpoint(ctx context.Context, q querier, name string) (projections.Checkpoint, error) {
	cp := projections.Checkpoint{Name: name, State: projections.StateRunning}
	var (
		commit, prepare int64
		state           string
		failure         []byte
	)
	err := q.QueryRow(ctx, s.q.read, name).Scan(&commit, &prepare, &state, &failure, &cp.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("pgsink: read checkpoint of %s: %w", name, err)
	}
	cp.Position = es.Position{Commit: uint64(commit), Prepare: uint64(prepare)}
	cp.State = projections.State(state)
	if failure != nil {
		var f projections.Failure
		if err := json.Unmarshal(failure, &f); err != nil {
			return cp, fmt.Errorf("pgsink: read checkpoint of %s: failure: %w", name, err)
		}
		cp.Failure = &f
	}
	return cp, nil
}

// SetState implements [projections.Checkpoints].
func (s *Sink) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	fj, err := failureJSON(f)
	if err != nil {
		return err
	}
	// Under the lock: a pause waits for the batch in flight, and the next
	// batch finds the projection paused.
	if err := s.locked(ctx, name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, s.q.setState, name, string(state), fj)
		return err
	}); err != nil {
		return fmt.Errorf("pgsink: set state of %s to %s: %w", name, state, err)
	}
	return nil
}

func failureJSON(f *projections.Failure) ([]byte, error) {
	if f == nil {
		return nil, nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("pgsink: encode failure: %w", err)
	}
	return b, nil
}

// Reset sets the checkpoint of a projection to pos, and does nothing else:
// a worker applies the events after pos again into the rows that may
// already reflect them. It is the low-level move rebuilds use; to reset a
// projection without applying an event twice, use [Sink.ResetProjection],
// and for a replay into new tables, [Sink.Rebuild].
func (s *Sink) Reset(ctx context.Context, name string, pos es.Position) error {
	// Under the lock: a batch in flight commits first, and the next one
	// finds the checkpoint moved.
	err := s.locked(ctx, name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, s.expand(`WITH c AS (INSERT INTO {{schema}}.projection_checkpoints AS cp (name, commit_pos, prepare_pos)
		VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE
		SET commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, updated_at = now()
		RETURNING name) SELECT pg_catalog.pg_notify(`+quoteLiteral(s.channel)+`, name) FROM c`),
			name, int64(pos.Commit), int64(pos.Prepare))
		return err
	})
	if err != nil {
		return fmt.Errorf("pgsink: reset %s to %s: %w", name, pos, err)
	}
	return nil
}

// DeleteCheckpoint deletes the checkpoint of a projection: it is no longer
// listed by [Sink.Projections] (unless it has dead letters or a rebuild in
// progress), and a worker would start it from the start of the log. Its
// dead letters stay (see [Sink.DeleteDeadLetters]; for the checkpoint of a
// rebuild, [Sink.DeleteRebuildCheckpoint]). Deleting a checkpoint that does not exist does
// nothing.
func (s *Sink) DeleteCheckpoint(ctx context.Context, name string) error {
	if err := s.locked(ctx, name, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_checkpoints WHERE name = $1`), name)
		return err
	}); err != nil {
		return fmt.Errorf("pgsink: delete checkpoint of %s: %w", name, err)
	}
	return nil
}

// ProjectionInfo is what the sink keeps of a projection, as
// [Sink.Projections] lists it.
type ProjectionInfo struct {
	Name string
	// Checkpoint is the projection's checkpoint: position Start and
	// StateRunning when it has none (yet).
	Checkpoint projections.Checkpoint
	// Rebuilding says that a new generation is being built, by a process
	// now or by a rebuild that was interrupted (see [Sink.RebuildStatus]).
	Rebuilding bool
	// DeadLetters counts the projection's dead letters (those of a
	// generation being built are not among them until its swap).
	DeadLetters int64
}

// Projections lists, by name, the projections that have a checkpoint, a
// rebuild in progress or dead letters. The checkpoints of generations being
// built (named with [projections.RebuildSuffix]) are not listed apart: they set
// Rebuilding on their projection.
func (s *Sink) Projections(ctx context.Context) ([]ProjectionInfo, error) {
	rows, err := s.pool.Query(ctx, s.expand(`WITH names AS (
			SELECT CASE WHEN right(name, $1) = $2 THEN left(name, -$1) ELSE name END AS name
			FROM {{schema}}.projection_checkpoints
			UNION SELECT name FROM {{schema}}.projection_rebuilds
			UNION SELECT CASE WHEN right(projection, $1) = $2 THEN left(projection, -$1) ELSE projection END
			FROM {{schema}}.projection_dead_letters
		)
		SELECT n.name, c.commit_pos, c.prepare_pos, c.state, c.failure, c.updated_at,
			EXISTS (SELECT FROM {{schema}}.projection_rebuilds r WHERE r.name = n.name)
				OR EXISTS (SELECT FROM {{schema}}.projection_checkpoints r WHERE r.name = n.name || $2),
			(SELECT count(*) FROM {{schema}}.projection_dead_letters d WHERE d.projection = n.name)
		FROM names n LEFT JOIN {{schema}}.projection_checkpoints c ON c.name = n.name
		ORDER BY n.name`), len(projections.RebuildSuffix), projections.RebuildSuffix)
	if err != nil {
		return nil, fmt.Errorf("pgsink: list projections: %w", err)
	}
	defer rows.Close()
	out := []ProjectionInfo{}
	for rows.Next() {
		var (
			p               ProjectionInfo
			commit, prepare *int64
			state           *string
			failure         []byte
			updated         *time.Time
		)
		if err := rows.Scan(&p.Name, &commit, &prepare, &state, &failure, &updated, &p.Rebuilding, &p.DeadLetters); err != nil {
			return nil, fmt.Errorf("pgsink: list projections: %w", err)
		}
		p.Checkpoint = projections.Checkpoint{Name: p.Name, State: projections.StateRunning}
		if state != nil {
			p.Checkpoint.Position = es.Position{Commit: uint64(*commit), Prepare: uint64(*prepare)}
			p.Checkpoint.State = projections.State(*state)
			p.Checkpoint.UpdatedAt = *updated
		}
		if failure != nil {
			var f projections.Failure
			if err := json.Unmarshal(failure, &f); err != nil {
				return nil, fmt.Errorf("pgsink: list projections: failure of %s: %w", p.Name, err)
			}
			p.Checkpoint.Failure = &f
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgsink: list projections: %w", err)
	}
	return out, nil
}
