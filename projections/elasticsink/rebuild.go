package elasticsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// RebuildConfig tunes [Sink.Rebuild]. The zero value works.
type RebuildConfig struct {
	// Worker configures the worker that builds the new generation.
	Worker projections.Config
	// Progress, when set, is called about every ProgressEvery and once at
	// the end, with the same figures as pgsink's rebuilds.
	Progress func(projections.RebuildProgress)
	// ProgressEvery defaults to 1s.
	ProgressEvery time.Duration
}

// Rebuild builds p's index again from the start of the log, blue/green: the
// new generation is an index of its own (Alias-g<unix ms>, with p's current
// mappings and settings) under a checkpoint of its own (the projection's
// name + "#rebuild", with state rebuilding), while the alias keeps serving
// the old generation and the live worker keeps updating it. Once the new
// generation has caught up with the head of the log and been refreshed, one
// _aliases request
// moves the alias to it (searches see the old index or the new one, never
// neither), the live checkpoint is set to where the new generation is (a
// live worker that was ahead replays the difference into the new index,
// which the external versions make harmless), and the old index is
// deleted.
//
// Rebuild is resumable: after a crash, a cancelled ctx or an error,
// calling it again continues the same generation from its checkpoint, or
// finishes a swap that was cut short. Elasticsearch or PostgreSQL going
// away for a while is retried by the worker with backoff. Run one Rebuild
// per projection at a time.
func (s *Sink) Rebuild(ctx context.Context, store es.Store, reg *es.Registry, p Projection, cfg RebuildConfig) error {
	name, ix := p.Name(), p.Index()
	cpName := name + projections.RebuildSuffix
	log := cfg.Worker.Logger
	if log == nil {
		log = s.cfg.Logger
	}
	gens, live, err := s.prepareRebuild(ctx, p)
	if err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	// A swap cut short: the alias moved, the rest did not happen yet.
	for _, idx := range live {
		if m, ok := gens[idx]; ok && m.Rebuild {
			log.InfoContext(ctx, "elasticsink: finishing an interrupted swap", slog.String("projection", name), slog.String("index", idx))
			if err := s.finishSwap(ctx, name, cpName, ix.Alias, idx, gens); err != nil {
				return err
			}
			s.report(ctx, cfg, name, cpName, m, nil, true)
			return nil
		}
	}
	index, m, resumed := resumableGeneration(gens, live)
	if !resumed {
		if index, m, err = s.startRebuild(ctx, store, name, cpName, ix); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, "elasticsink: rebuilding", slog.String("projection", name), slog.Bool("resumed", resumed),
		slog.String("index", index))
	run, err := s.fillGeneration(ctx, store, reg, p, cfg, index, m)
	if err != nil {
		return err
	}
	if err := s.swapIn(ctx, name, ix.Alias, live, index, gens); err != nil {
		return err
	}
	s.report(ctx, cfg, name, cpName, m, run, true)
	log.InfoContext(ctx, "elasticsink: rebuild swapped in", slog.String("projection", name), slog.String("index", index))
	return nil
}

// prepareRebuild makes sure the sink's tables and p's index exist, and
// returns the generations of p's alias and the indices the alias points
// at.
func (s *Sink) prepareRebuild(ctx context.Context, p Projection) (gens map[string]meta, live []string, err error) {
	if err := s.migrateOnce(ctx); err != nil {
		return nil, nil, err
	}
	if _, err := s.EnsureIndex(ctx, p); err != nil {
		return nil, nil, err
	}
	alias := p.Index().Alias
	if gens, err = s.generations(ctx, alias); err != nil {
		return nil, nil, err
	}
	if live, err = s.aliasIndices(ctx, alias); err != nil {
		return nil, nil, err
	}
	return gens, live, nil
}

// resumableGeneration returns the generation an earlier Rebuild left
// unfinished, not behind the alias, if there is one: the last by name.
func resumableGeneration(gens map[string]meta, live []string) (index string, m meta, ok bool) {
	for _, idx := range slices.Sorted(maps.Keys(gens)) {
		if gm := gens[idx]; gm.Rebuild && !slices.Contains(live, idx) {
			index, m, ok = idx, gm, true
		}
	}
	return index, m, ok
}

// fillGeneration runs a worker that writes p's events into index, the
// generation being built, from its checkpoint up to the head of the log,
// reporting progress as it goes. It returns the run whose progress it
// reported.
func (s *Sink) fillGeneration(ctx context.Context, store es.Store, reg *es.Registry, p Projection, cfg RebuildConfig, index string, m meta) (*progressRun, error) {
	name := p.Name()
	cpName := name + projections.RebuildSuffix
	gen := &generation{sink: s, index: index}
	w := projections.NewWorker(store, reg, projections.Sink[*Tx](gen),
		projections.Projection[*Tx](renamed{flushing{p}, cpName}), cfg.Worker)
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	startCP, err := s.pg.Checkpoint(ctx, cpName)
	if err != nil {
		return nil, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	run := &progressRun{began: time.Now(), from: startCP.Position}
	if cfg.Progress != nil {
		head := es.Position{Commit: m.HeadCommit, Prepare: m.HeadPrepare}
		if run.meter, err = projections.NewProgressMeter(ctx, store, name, head, startCP.Position); err != nil {
			return nil, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
		}
	}
	head, err := store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	if err := w.RunUntil(ctx, s.pg, head, every, func() { s.report(ctx, cfg, name, cpName, m, run, false) }); err != nil {
		return nil, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	return run, nil
}

// swapIn makes everything index holds searchable, so that the alias does
// not move to an index that still looks partial, moves the alias from
// live to index in one request, then finishes the swap.
func (s *Sink) swapIn(ctx context.Context, name, alias string, live []string, index string, gens map[string]meta) error {
	ref := s.client.Indices.Refresh
	if err := s.request(ctx, "rebuild "+name+": refresh "+index, s.cfg.BulkTimeout, func(ctx context.Context) (*esapi.Response, error) {
		return ref(ref.WithIndex(index), ref.WithContext(ctx))
	}); err != nil {
		return err
	}
	if err := s.moveAlias(ctx, alias, live, index); err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	return s.finishSwap(ctx, name, name+projections.RebuildSuffix, alias, index, gens)
}

// startRebuild resets the rebuild's checkpoint and creates the new
// generation, recording the head of the log in its _meta for progress.
func (s *Sink) startRebuild(ctx context.Context, store es.Store, name, cpName string, ix Index) (string, meta, error) {
	head, err := store.Head(ctx)
	if err != nil {
		return "", meta{}, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	// The checkpoint first: an index that exists always has its checkpoint.
	if err := s.pg.Reset(ctx, cpName, es.Start); err != nil {
		return "", meta{}, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	if err := s.pg.SetState(ctx, cpName, projections.StateRebuilding, nil); err != nil {
		return "", meta{}, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	// The generation numbers its events from 1.
	if err := s.forgetRecord(ctx, cpName); err != nil {
		return "", meta{}, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	m := meta{Alias: ix.Alias, Rebuild: true, HeadCommit: head.Commit, HeadPrepare: head.Prepare}
	index, err := s.newGeneration(ctx, ix, m)
	if err != nil {
		return "", meta{}, fmt.Errorf("elasticsink: rebuild %s: %w", name, err)
	}
	return index, m, nil
}

// generations returns the indices named alias-g* that belong to alias,
// with their _meta.strata.
func (s *Sink) generations(ctx context.Context, alias string) (_ map[string]meta, err error) {
	ctx, cancel := s.small(ctx, "read mappings of "+alias+"-g*")
	defer cancel()
	defer func() { err = timedOut(ctx, err) }()
	get := s.client.Indices.GetMapping
	res, err := get(get.WithIndex(alias+"-g*"), get.WithContext(ctx), get.WithAllowNoIndices(true))
	if err := check(res, err, "read mappings of "+alias+"-g*"); err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out map[string]struct {
		Mappings struct {
			Meta struct {
				Strata *meta `json:"strata"`
			} `json:"_meta"`
		} `json:"mappings"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("elasticsink: read mappings of %s-g*: %w", alias, err)
	}
	gens := make(map[string]meta)
	for idx, v := range out {
		if m := v.Mappings.Meta.Strata; m != nil && m.Alias == alias {
			gens[idx] = *m
		}
	}
	return gens, nil
}

// finishSwap completes a swap once the alias points at index: it moves the
// live checkpoint to the new generation's and hands the generation's
// record to it, deletes the other generations and the rebuild's
// checkpoint, resumes the projection if it was stalled, and clears the
// rebuild mark.
func (s *Sink) finishSwap(ctx context.Context, name, cpName, alias, index string, gens map[string]meta) error {
	cp, err := s.pg.Checkpoint(ctx, cpName)
	if err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
	}
	// Waits for a live batch in flight (it holds the checkpoint's lock), then
	// sets the checkpoint: a live worker restarts from there, into the new
	// index. Until the record is handed over, live batches find the alias
	// on an index being swapped in, and wait.
	if err := s.pg.Reset(ctx, name, cp.Position); err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
	}
	if err := s.adoptGeneration(ctx, name, cpName, alias, index); err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
	}
	var old []string
	for idx := range gens {
		if idx != index {
			old = append(old, idx)
		}
	}
	if len(old) > 0 {
		slices.Sort(old)
		del := s.client.Indices.Delete
		if err := s.request(ctx, fmt.Sprintf("rebuild %s: delete old generations %v", name, old), s.cfg.BulkTimeout,
			func(ctx context.Context) (*esapi.Response, error) {
				return del(old, del.WithContext(ctx), del.WithIgnoreUnavailable(true))
			}); err != nil {
			return err
		}
	}
	// The generation's dead letters become the projection's with it.
	if err := s.pg.DeleteRebuildCheckpoint(ctx, name); err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
	}
	// The new generation got past every event up to the checkpoint; an
	// event after it that stalled the projection stalls it again.
	if live, err := s.pg.Checkpoint(ctx, name); err != nil {
		return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
	} else if live.State == projections.StateStalled {
		if err := s.pg.SetState(ctx, name, projections.StateRunning, nil); err != nil {
			return fmt.Errorf("elasticsink: rebuild %s: swap: %w", name, err)
		}
	}
	m := gens[index] // absent when the generation was made after gens was read
	m.Alias, m.Rebuild = alias, false
	body, err := json.Marshal(map[string]any{"_meta": map[string]any{"strata": m}})
	if err != nil {
		return err
	}
	put := s.client.Indices.PutMapping
	return s.request(ctx, "rebuild "+name+": clear the rebuild mark", s.cfg.BulkTimeout, func(ctx context.Context) (*esapi.Response, error) {
		return put([]string{index}, bytes.NewReader(body), put.WithContext(ctx))
	})
}

type progressRun struct {
	began time.Time
	from  es.Position
	meter *projections.ProgressMeter // counts events on a store that can
}

func (s *Sink) report(ctx context.Context, cfg RebuildConfig, name, cpName string, m meta, run *progressRun, swapped bool) {
	if cfg.Progress == nil {
		return
	}
	if run != nil && run.meter != nil {
		var cp projections.Checkpoint
		if !swapped {
			var err error
			if cp, err = s.pg.Checkpoint(context.WithoutCancel(ctx), cpName); err != nil {
				return
			}
		}
		if pr, err := run.meter.Progress(context.WithoutCancel(ctx), cp.Position, swapped); err == nil {
			cfg.Progress(pr)
		}
		return
	}
	pr := projections.RebuildProgress{Projection: name, Total: int64(m.HeadPrepare), Swapped: swapped, Estimated: true}
	if swapped {
		pr.Done = pr.Total
	} else {
		cp, err := s.pg.Checkpoint(context.WithoutCancel(ctx), cpName)
		if err != nil {
			return
		}
		pr.Done = int64(cp.Position.Prepare)
	}
	if run != nil {
		pr.Estimate(int64(run.from.Prepare), time.Since(run.began))
	}
	cfg.Progress(pr)
}

// generation is the sink as the worker that builds a new generation sees
// it: handlers write to the generation's index, and there is no lease
// (Rebuild is the only writer).
type generation struct {
	sink  *Sink
	index string
}

func (g *generation) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	return g.sink.apply(ctx, p, target{index: g.index}, handle)
}

func (g *generation) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	cp, err := g.sink.pg.Checkpoint(ctx, name)
	if cp.State == projections.StateRebuilding {
		cp.State = projections.StateRunning // to the worker, rebuilding is running
	}
	return cp, err
}

func (g *generation) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	return g.sink.pg.SetState(ctx, name, state, f)
}

func (g *generation) Transient(err error) bool { return g.sink.Transient(err) }

func (g *generation) BatchSize() int { return g.sink.BatchSize() }

// renamed runs a projection under the rebuild's checkpoint name.
type renamed struct {
	projections.Projection[*Tx]
	name string
}

func (r renamed) Name() string { return r.name }
