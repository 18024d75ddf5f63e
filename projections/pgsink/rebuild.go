package pgsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Rebuildable is a projection whose tables [Sink.Rebuild] can build anew.
type Rebuildable interface {
	projections.Projection[*Tx]
	// Tables lists the projection's read-model tables, by the names
	// handlers give [Tx.Table].
	Tables() []string
	// Setup creates the projection's tables, named through tx.Table, with
	// their indexes. Index and constraint names must be left to PostgreSQL
	// or derived from the table name, since generations live side by side.
	Setup(ctx context.Context, tx *Tx) error
}

// RebuildConfig tunes [Sink.Rebuild]. The zero value works.
type RebuildConfig struct {
	// Worker configures the worker that builds the new generation.
	Worker projections.Config
	// Progress, when set, is called about every ProgressEvery and once at
	// the end.
	Progress func(projections.RebuildProgress)
	// ProgressEvery defaults to 1s.
	ProgressEvery time.Duration
}

type rebuildRow struct {
	name, suffix string
	head         es.Position
}

// Rebuild builds p's tables again from the start of the log, blue/green:
// the new generation is written to tables of its own (the names of
// p.Tables() with a suffix) under a checkpoint of its own, while the live
// tables keep serving reads and the live worker keeps updating them. Once
// the new generation has caught up, one transaction holds the live
// checkpoint, lets the new generation catch up to it, renames the live
// tables away and the new ones into their place, drops the old ones and
// moves the live checkpoint to where the new generation is. Readers wait for
// that transaction at most and never see a missing or partial table. A live
// worker picks up from the moved checkpoint by itself.
//
// Events the new generation cannot handle follow cfg.Worker.ErrorPolicy.
// Those it parks are kept under its own checkpoint's name until the swap,
// whose transaction makes them the projection's dead letters in place of
// the old generation's: every event those covered was handed to the new
// generation, which applied it or parked it again.
//
// Rebuild is resumable: after a crash or a cancelled ctx, calling it again
// continues the same generation from its checkpoint; a generation that
// stalled tries the event it stalled at again (after a fix, or with
// [projections.PolicyDeadLetter]). One Rebuild of a
// projection runs at a time, in any process: it holds an advisory lock (a
// lease, like a worker's) while it runs, and a second call returns a
// [*RebuildRunningError] with the running one's progress at once.
func (s *Sink) Rebuild(ctx context.Context, store es.Store, reg *es.Registry, p Rebuildable, cfg RebuildConfig) error {
	name := p.Name()
	lease, err := s.lockRebuild(ctx, store, name)
	if err != nil {
		return err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Lost():
			cancel(errors.New("pgsink: rebuild: lost the rebuild's lock"))
		case <-ctx.Done():
		}
	}()
	row, resumed, err := s.startRebuild(ctx, store, p)
	if err != nil {
		return err
	}
	if resumed {
		if err := s.retryStalled(ctx, row.name); err != nil {
			return err
		}
	}
	log := cfg.Worker.Logger
	if log == nil {
		log = slog.Default()
	}
	log.InfoContext(ctx, "pgsink: rebuilding", slog.String("projection", name), slog.Bool("resumed", resumed),
		slog.String("generation", row.suffix))
	gen := &generation{sink: s, suffix: row.suffix}
	w := projections.NewWorker(store, reg, projections.Sink[*Tx](gen), projections.Projection[*Tx](renamed{p, row.name}), cfg.Worker)
	report, err := s.rebuildReporter(ctx, store, name, row, cfg.Progress)
	if err != nil {
		return err
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	if err := s.catchUpAndSwap(ctx, store, w, p, row, every, report); err != nil {
		return err
	}
	log.InfoContext(ctx, "pgsink: rebuild swapped in", slog.String("projection", name))
	return nil
}

// lockRebuild takes the lock of name's rebuild. When another process holds
// it, it returns a [*RebuildRunningError] with that rebuild's progress.
func (s *Sink) lockRebuild(ctx context.Context, store es.Store, name string) (projections.Lease, error) {
	lease, got, err := s.TryLock(ctx, name+projections.RebuildSuffix)
	if err != nil {
		return nil, fmt.Errorf("pgsink: rebuild %s: %w", name, err)
	}
	if got {
		return lease, nil
	}
	pr, _, err := s.RebuildStatus(ctx, name)
	if err == nil {
		err = pr.Count(ctx, store)
	}
	if err != nil {
		return nil, fmt.Errorf("pgsink: rebuild %s: another rebuild is running: %w", name, err)
	}
	return nil, &RebuildRunningError{Projection: name, Progress: pr}
}

// retryStalled sets a resumed generation's checkpoint running again when
// it is stalled: calling Rebuild again is the request to try a stalled
// generation again.
func (s *Sink) retryStalled(ctx context.Context, cpName string) error {
	cp, err := s.Checkpoint(ctx, cpName)
	if err != nil {
		return err
	}
	if cp.State != projections.StateStalled {
		return nil
	}
	return s.SetState(ctx, cpName, projections.StateRebuilding, nil)
}

// rebuildReporter returns the function that reports the progress of the
// generation of row to progress, if set; swapped says that it is done and
// swapped in.
func (s *Sink) rebuildReporter(ctx context.Context, store es.Store, name string, row rebuildRow, progress func(projections.RebuildProgress)) (report func(swapped bool), err error) {
	if progress == nil {
		return func(bool) {}, nil
	}
	startCP, err := s.Checkpoint(ctx, row.name)
	if err != nil {
		return nil, err
	}
	meter, err := projections.NewProgressMeter(ctx, store, name, row.head, startCP.Position)
	if err != nil {
		return nil, fmt.Errorf("pgsink: rebuild %s: %w", name, err)
	}
	return func(swapped bool) {
		cp, err := s.Checkpoint(context.WithoutCancel(ctx), row.name)
		if err != nil && !swapped {
			return
		}
		pr, err := meter.Progress(context.WithoutCancel(ctx), cp.Position, swapped)
		if err != nil {
			return
		}
		progress(pr)
	}, nil
}

// catchUpAndSwap runs w up to the head of the log as it is, then tries to
// swap the generation in, until a swap succeeds.
func (s *Sink) catchUpAndSwap(ctx context.Context, store es.Store, w *projections.Worker[*Tx], p Rebuildable, row rebuildRow, every time.Duration, report func(swapped bool)) error {
	name := p.Name()
	for {
		head, err := store.Head(ctx)
		if err != nil {
			return fmt.Errorf("pgsink: rebuild %s: %w", name, err)
		}
		if err := w.RunUntil(ctx, s, head, every, func() { report(false) }); err != nil {
			return fmt.Errorf("pgsink: rebuild %s: %w", name, err)
		}
		swapped, err := s.swap(ctx, w, p, row, every, func() { report(false) })
		if err != nil {
			return err
		}
		if swapped {
			report(true)
			return nil
		}
	}
}

// ErrRebuildRunning means a rebuild of the projection is running already.
var ErrRebuildRunning = errors.New("pgsink: a rebuild of the projection is running")

// RebuildRunningError is returned by [Sink.Rebuild] when another rebuild of
// the projection holds its lock, with that rebuild's progress.
type RebuildRunningError struct {
	Projection string
	Progress   projections.RebuildProgress
}

func (e *RebuildRunningError) Error() string {
	p := e.Progress
	if p.Estimated {
		return fmt.Sprintf("pgsink: rebuild %s: another rebuild is running: about %d%% done, ETA %s",
			e.Projection, p.Done*100/max(p.Total, 1), p.ETA.Round(time.Second))
	}
	return fmt.Sprintf("pgsink: rebuild %s: another rebuild is running: %d of %d events, %.0f events/s, ETA %s",
		e.Projection, p.Done, p.Total, p.Rate, p.ETA.Round(time.Second))
}

func (e *RebuildRunningError) Unwrap() error { return ErrRebuildRunning }

// RebuildStatus reports the progress of the rebuild of a projection that is
// in progress (running, or interrupted and waiting to be resumed), and
// false when there is none. Rate and ETA are averaged since the rebuild
// first started. Running says whether a process is running it now. The
// sink has no store to count with, so Done and Total are Estimated, from
// positions; [projections.RebuildProgress.Count] makes them counts of events.
func (s *Sink) RebuildStatus(ctx context.Context, name string) (projections.RebuildProgress, bool, error) {
	var (
		rebuildName string
		started     time.Time
		hc, hp      int64
	)
	err := s.pool.QueryRow(ctx, s.expand(`SELECT rebuild_name, started_at, head_commit, head_prepare
		FROM {{schema}}.projection_rebuilds WHERE name = $1`), name).Scan(&rebuildName, &started, &hc, &hp)
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.RebuildProgress{}, false, nil
	}
	if err != nil {
		return projections.RebuildProgress{}, false, fmt.Errorf("pgsink: rebuild status of %s: %w", name, err)
	}
	cp, err := s.Checkpoint(ctx, rebuildName)
	if err != nil {
		return projections.RebuildProgress{}, false, err
	}
	_, running, err := s.LeaseHolder(ctx, rebuildName)
	if err != nil {
		return projections.RebuildProgress{}, false, err
	}
	pr := projections.RebuildProgress{Projection: name, Total: hp, Done: int64(cp.Position.Prepare), Estimated: true, Running: running,
		At: cp.Position, Head: es.Position{Commit: uint64(hc), Prepare: uint64(hp)}}
	pr.Estimate(0, time.Since(started))
	return pr, true, nil
}

// startRebuild finds the rebuild in progress or starts one: it records it
// and creates the new generation's tables.
func (s *Sink) startRebuild(ctx context.Context, store es.Store, p Rebuildable) (rebuildRow, bool, error) {
	name := p.Name()
	row := rebuildRow{}
	var hc, hp int64
	err := s.pool.QueryRow(ctx, s.expand(`SELECT rebuild_name, suffix, head_commit, head_prepare
		FROM {{schema}}.projection_rebuilds WHERE name = $1`), name).Scan(&row.name, &row.suffix, &hc, &hp)
	if err == nil {
		row.head = es.Position{Commit: uint64(hc), Prepare: uint64(hp)}
		return row, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return row, false, fmt.Errorf("pgsink: rebuild %s: %w", name, err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return row, false, fmt.Errorf("pgsink: rebuild %s: %w", name, err)
	}
	row = rebuildRow{name: name + projections.RebuildSuffix, suffix: fmt.Sprintf("__r%d", time.Now().Unix()), head: head}
	err = s.locked(ctx, row.name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.expand(`INSERT INTO {{schema}}.projection_rebuilds
			(name, rebuild_name, suffix, head_commit, head_prepare) VALUES ($1, $2, $3, $4, $5)`),
			name, row.name, row.suffix, int64(head.Commit), int64(head.Prepare)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.expand(`INSERT INTO {{schema}}.projection_checkpoints AS c (name, state)
			VALUES ($1, 'rebuilding') ON CONFLICT (name) DO UPDATE
			SET commit_pos = 0, prepare_pos = 0, state = 'rebuilding', failure = NULL, updated_at = now()`), row.name); err != nil {
			return err
		}
		// Dead letters of a generation abandoned before its swap.
		if _, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_dead_letters WHERE projection = $1`), row.name); err != nil {
			return err
		}
		for _, t := range p.Tables() {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.cfg.ReadSchema, t + row.suffix}.Sanitize()); err != nil {
				return err
			}
		}
		return p.Setup(ctx, &Tx{Tx: tx, readSchema: s.cfg.ReadSchema, suffix: row.suffix})
	})
	if err != nil {
		return row, false, fmt.Errorf("pgsink: rebuild %s: start: %w", name, err)
	}
	return row, false, nil
}

// swap puts the new generation in place of the live one, if it can catch
// up with the live checkpoint while that is held.
func (s *Sink) swap(ctx context.Context, w *projections.Worker[*Tx], p Rebuildable, row rebuildRow, every time.Duration, tick func()) (bool, error) {
	name := p.Name()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := s.lockCheckpoint(ctx, tx, name); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: hold the live checkpoint: %w", name, err)
	}
	cp, err := s.checkpoint(ctx, tx, name)
	if err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
	}
	live := cp.Position
	// The live worker waits now; let the new generation reach it.
	if err := w.RunUntil(ctx, s, live, every, tick); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: %w", name, err)
	}
	next, err := s.Checkpoint(ctx, row.name)
	if err != nil {
		return false, err
	}
	for _, t := range p.Tables() {
		cur := pgx.Identifier{s.cfg.ReadSchema, t}
		old := t + "__old"
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.cfg.ReadSchema, old}.Sanitize()); err != nil {
			return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE IF EXISTS "+cur.Sanitize()+" RENAME TO "+pgx.Identifier{old}.Sanitize()); err != nil {
			return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{s.cfg.ReadSchema, t + row.suffix}.Sanitize()+" RENAME TO "+pgx.Identifier{t}.Sanitize()); err != nil {
			return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.cfg.ReadSchema, old}.Sanitize()); err != nil {
			return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
		}
	}
	if err := s.advance(ctx, tx, name, live, next.Position, nil); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
	}
	if err := s.adoptDeadLetters(ctx, tx, row.name, name); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: move dead letters: %w", name, err)
	}
	if _, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_checkpoints WHERE name = $1`), row.name); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
	}
	if _, err := tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.projection_rebuilds WHERE name = $1`), name); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("pgsink: rebuild %s: swap: commit: %w", name, err)
	}
	return true, nil
}

// generation is the sink as seen by the worker that builds a new
// generation: handlers write to the generation's tables, and there is no
// lease (Rebuild is the only writer).
type generation struct {
	sink   *Sink
	suffix string
}

func (g *generation) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	return g.sink.apply(ctx, p, g.suffix, handle)
}

func (g *generation) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	cp, err := g.sink.Checkpoint(ctx, name)
	if cp.State == projections.StateRebuilding {
		cp.State = projections.StateRunning // to the worker, rebuilding is running
	}
	return cp, err
}

func (g *generation) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	return g.sink.SetState(ctx, name, state, f)
}

func (g *generation) Transient(err error) bool { return IsTransient(err) }

// renamed runs a projection under the rebuild's checkpoint name.
type renamed struct {
	projections.Projection[*Tx]
	name string
}

func (r renamed) Name() string { return r.name }
