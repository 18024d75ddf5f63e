package elasticsink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	shadowlog "github.com/stratadev/strata/internal/shadow"
	"github.com/stratadev/strata/projections"
)

// Defaults for [VerifyConfig].
const (
	VerifySamplesDefault       = 20
	VerifyProgressEveryDefault = time.Second
)

// VerifyConfig tunes [Sink.Verify]. The zero value works.
type VerifyConfig struct {
	// Worker configures the worker that builds the shadow index; use the
	// live worker's error policy.
	Worker projections.Config
	// Progress, when set, is called about every ProgressEvery while the
	// shadow is built, and once when it is built.
	Progress func(projections.RebuildProgress)
	// ProgressEvery defaults to 1s.
	ProgressEvery time.Duration
	// Samples caps the differences kept in [Drift.Samples]; all are
	// counted. Defaults to 20.
	Samples int
	// Ignore names top-level fields of the documents that are not
	// compared. Defaults to none.
	Ignore []string
}

// Drift is what [Sink.Verify] found: how the documents behind a
// projection's alias differ from a rebuild of them at the same log
// position.
type Drift struct {
	Projection string      `json:"projection"`
	Position   es.Position `json:"position"`
	// Events counts the events the rebuild applied.
	Events int64 `json:"events"`
	// Index is the live index that was compared, behind the alias.
	Index       string `json:"index"`
	LiveDocs    int64  `json:"live_docs"`
	RebuiltDocs int64  `json:"rebuilt_docs"`
	// Missing counts documents the rebuild has and the live index lacks,
	// Extra those only the live index has, Different those whose _source
	// differs.
	Missing   int64 `json:"missing"`
	Extra     int64 `json:"extra"`
	Different int64 `json:"different"`
	// Samples are the first differences found, up to
	// [VerifyConfig.Samples].
	Samples []DocDiff `json:"samples"`
}

// Differences counts the documents that differ.
func (d Drift) Differences() int64 { return d.Missing + d.Extra + d.Different }

// Equal reports whether the live documents equal their rebuild.
func (d Drift) Equal() bool { return d.Differences() == 0 }

// DocDiff is a document that differs.
type DocDiff struct {
	Kind projections.DiffKind `json:"kind"`
	ID   string               `json:"id"`
	// Fields names the top-level fields that differ (DiffDifferent).
	Fields []string `json:"fields,omitempty"`
	// Live and Rebuilt are the documents' _source; nil for the side that
	// lacks the document.
	Live    json.RawMessage `json:"live,omitempty"`
	Rebuilt json.RawMessage `json:"rebuilt,omitempty"`
}

// verifyInfix names shadow indices: Alias + verifyInfix + Unix milliseconds.
const verifyInfix = "-verify-"

// Verify rebuilds p into a shadow index (Alias-verify-<unix ms>, with p's
// mappings and settings, behind no alias), compares its documents by _id
// and _source with those behind the alias at the same log position, and
// deletes the shadow. The alias keeps serving and the live worker keeps
// running; the live documents are not changed.
//
// The shadow is built up to the live checkpoint as it is when Verify
// starts. Then the live checkpoint is held (see [Keeper.HoldCheckpoint];
// a live batch locks it before it writes a document) for as long as it
// takes to refresh the live index and open a point in time on it, so that
// the live documents are read as of that checkpoint while the live worker
// goes on; the shadow is built on up to that checkpoint and no further.
// Documents a live batch wrote before it failed, and that its retry has not
// written again yet, show as drift.
//
// Handlers that keep PostgreSQL rows beside their documents
// ([Tx.Postgres]) write them in a transaction that is rolled back: the
// shadow changes nothing in PostgreSQL, and those rows are not compared.
// One Verify of a projection runs at a time ([projections.ErrVerifyRunning]); an
// interrupted one leaves a shadow index that the next Verify deletes.
func (s *Sink) Verify(ctx context.Context, store es.Store, reg *es.Registry, p Projection, cfg VerifyConfig) (Drift, error) {
	d, err := s.verify(ctx, store, reg, p, cfg)
	if err != nil {
		return Drift{}, fmt.Errorf("elasticsink: verify %s: %w", p.Name(), err)
	}
	return d, nil
}

func (s *Sink) verify(ctx context.Context, store es.Store, reg *es.Registry, p Projection, cfg VerifyConfig) (Drift, error) {
	name, ix := p.Name(), p.Index()
	cfg.Samples = cmp.Or(cfg.Samples, VerifySamplesDefault)
	cfg.ProgressEvery = cmp.Or(cfg.ProgressEvery, VerifyProgressEveryDefault)
	if err := validIndex(ix); err != nil {
		return Drift{}, err
	}
	lease, got, err := s.pg.TryLock(ctx, name+projections.VerifySuffix)
	if err != nil {
		return Drift{}, err
	}
	if !got {
		return Drift{}, projections.ErrVerifyRunning
	}
	defer lease.Release(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Lost():
			cancel(errors.New("lost the verification's lock"))
		case <-ctx.Done():
		}
	}()
	live, err := s.aliasIndices(ctx, ix.Alias)
	if err != nil {
		return Drift{}, err
	}
	if len(live) != 1 {
		return Drift{}, fmt.Errorf("alias %s points at %d indices %v; want one", ix.Alias, len(live), live)
	}

	// The shadow index, after what an interrupted verification left.
	if err := s.deleteShadows(ctx, ix.Alias); err != nil {
		return Drift{}, err
	}
	// A shadow left behind is deleted by the next verification.
	defer func() { _ = s.deleteShadows(context.WithoutCancel(ctx), ix.Alias) }()
	shadowIndex := ix.Alias + verifyInfix + strconv.FormatInt(time.Now().UnixMilli(), 10)
	body, err := createBody(ix, meta{}, false)
	if err != nil {
		return Drift{}, err
	}
	create := s.client.Indices.Create
	if err := do("create shadow index "+shadowIndex, done(create(shadowIndex, create.WithBody(bytes.NewReader(body)), create.WithContext(ctx)))); err != nil {
		return Drift{}, err
	}
	sh := &esShadow{Log: &shadowlog.Log{}, sink: s, index: shadowIndex, projection: name}
	build := func(until es.Position) error {
		w := projections.NewWorker(sh.Store(store), reg, projections.Sink[*Tx](sh),
			projections.Projection[*Tx](verifyRenamed{flushing{p}, name + projections.VerifySuffix}), cfg.Worker)
		return sh.build(ctx, store, w, until, cfg)
	}

	cp, err := s.pg.Checkpoint(ctx, name)
	if err != nil {
		return Drift{}, err
	}
	if err := build(cp.Position); err != nil {
		return Drift{}, err
	}
	// Freeze the live index as of the live checkpoint: hold it, refresh,
	// open a point in time, let go.
	cp, release, err := s.pg.HoldCheckpoint(ctx, name)
	if err != nil {
		return Drift{}, err
	}
	ref := s.client.Indices.Refresh
	err = do("refresh "+ix.Alias, done(ref(ref.WithIndex(ix.Alias), ref.WithContext(ctx))))
	var livePIT string
	if err == nil {
		livePIT, err = s.openPIT(ctx, live[0])
	}
	release()
	if err != nil {
		return Drift{}, err
	}
	defer s.closePIT(context.WithoutCancel(ctx), livePIT)
	if err := build(cp.Position); err != nil {
		return Drift{}, err
	}
	if err := do("refresh "+shadowIndex, done(ref(ref.WithIndex(shadowIndex), ref.WithContext(ctx)))); err != nil {
		return Drift{}, err
	}

	d := Drift{Projection: name, Position: cp.Position, Events: sh.Events(), Index: live[0], Samples: []DocDiff{}}
	add := func(x DocDiff) {
		if len(d.Samples) < cfg.Samples {
			d.Samples = append(d.Samples, x)
		}
	}
	seen := make(map[string]struct{})
	err = s.scan(ctx, livePIT, func(hits []hit) error {
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.ID
			seen[h.ID] = struct{}{}
		}
		d.LiveDocs += int64(len(hits))
		rebuilt, err := s.mgetSources(ctx, shadowIndex, ids)
		if err != nil {
			return err
		}
		for i, h := range hits {
			r, ok := rebuilt[i], rebuilt[i] != nil
			if !ok {
				d.Extra++
				add(DocDiff{Kind: projections.DiffExtra, ID: h.ID, Live: h.Source})
				continue
			}
			fields, err := diffFields(h.Source, r, cfg.Ignore)
			if err != nil {
				return fmt.Errorf("compare document %s: %w", h.ID, err)
			}
			if len(fields) > 0 {
				d.Different++
				add(DocDiff{Kind: projections.DiffDifferent, ID: h.ID, Fields: fields, Live: h.Source, Rebuilt: r})
			}
		}
		return nil
	})
	if err != nil {
		return Drift{}, err
	}
	shadowPIT, err := s.openPIT(ctx, shadowIndex)
	if err != nil {
		return Drift{}, err
	}
	defer s.closePIT(context.WithoutCancel(ctx), shadowPIT)
	err = s.scan(ctx, shadowPIT, func(hits []hit) error {
		d.RebuiltDocs += int64(len(hits))
		for _, h := range hits {
			if _, ok := seen[h.ID]; !ok {
				d.Missing++
				add(DocDiff{Kind: projections.DiffMissing, ID: h.ID, Rebuilt: h.Source})
			}
		}
		return nil
	})
	if err != nil {
		return Drift{}, err
	}
	return d, nil
}

// deleteShadows deletes the shadow indices of alias.
func (s *Sink) deleteShadows(ctx context.Context, alias string) error {
	get := s.client.Indices.Get
	res, err := get([]string{alias + verifyInfix + "*"}, get.WithContext(ctx), get.WithAllowNoIndices(true))
	if err := check(res, err, "find shadow indices of "+alias); err != nil {
		return err
	}
	defer drain(res.Body)
	var m map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return fmt.Errorf("elasticsink: find shadow indices of %s: %w", alias, err)
	}
	var names []string
	for n := range m {
		if _, err := strconv.ParseInt(n[len(alias)+len(verifyInfix):], 10, 64); err == nil {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	del := s.client.Indices.Delete
	return do(fmt.Sprintf("delete shadow indices %v", names), done(del(names, del.WithContext(ctx), del.WithIgnoreUnavailable(true))))
}

type hit struct {
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
	Sort   []any           `json:"sort"`
}

// pitKeepAlive is how long a point in time lives between two pages.
const pitKeepAlive = "5m"

func (s *Sink) openPIT(ctx context.Context, index string) (string, error) {
	open := s.client.OpenPointInTime
	res, err := open([]string{index}, pitKeepAlive, open.WithContext(ctx))
	if err := check(res, err, "open a point in time on "+index); err != nil {
		return "", err
	}
	defer drain(res.Body)
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.ID == "" {
		return "", fmt.Errorf("elasticsink: open a point in time on %s: no id (%v)", index, err)
	}
	return out.ID, nil
}

func (s *Sink) closePIT(ctx context.Context, id string) {
	b, _ := json.Marshal(map[string]string{"id": id})
	cl := s.client.ClosePointInTime
	_ = done(cl(cl.WithBody(bytes.NewReader(b)), cl.WithContext(ctx)))
}

// scan hands every document of a point in time to fn, a page at a time.
func (s *Sink) scan(ctx context.Context, pit string, fn func([]hit) error) error {
	var after []any
	for {
		q := map[string]any{"size": 1000, "pit": map[string]any{"id": pit, "keep_alive": pitKeepAlive},
			"sort": []string{"_shard_doc"}, "track_total_hits": false}
		if after != nil {
			q["search_after"] = after
		}
		b, err := json.Marshal(q)
		if err != nil {
			return err
		}
		search := s.client.Search
		res, err := search(search.WithBody(bytes.NewReader(b)), search.WithContext(ctx))
		if err := check(res, err, "read documents"); err != nil {
			return err
		}
		var out struct {
			PIT  string `json:"pit_id"`
			Hits struct {
				Hits []hit `json:"hits"`
			} `json:"hits"`
		}
		dec := json.NewDecoder(res.Body)
		dec.UseNumber()
		err = dec.Decode(&out)
		drain(res.Body)
		if err != nil {
			return fmt.Errorf("elasticsink: read documents: %w", err)
		}
		hits := out.Hits.Hits
		if len(hits) == 0 {
			return nil
		}
		if err := fn(hits); err != nil {
			return err
		}
		after = hits[len(hits)-1].Sort
		if out.PIT != "" {
			pit = out.PIT
		}
	}
}

// mgetSources reads the _source of documents ids of index, in order; nil
// for those that do not exist.
func (s *Sink) mgetSources(ctx context.Context, index string, ids []string) ([]json.RawMessage, error) {
	b, err := json.Marshal(map[string]any{"ids": ids})
	if err != nil {
		return nil, err
	}
	mget := s.client.Mget
	res, err := mget(bytes.NewReader(b), mget.WithIndex(index), mget.WithContext(ctx))
	if err := check(res, err, "read documents of "+index); err != nil {
		return nil, err
	}
	defer drain(res.Body)
	var out struct {
		Docs []struct {
			Found  bool            `json:"found"`
			Source json.RawMessage `json:"_source"`
		} `json:"docs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("elasticsink: read documents of %s: %w", index, err)
	}
	if len(out.Docs) != len(ids) {
		return nil, fmt.Errorf("elasticsink: read documents of %s: %d answers to %d", index, len(out.Docs), len(ids))
	}
	srcs := make([]json.RawMessage, len(ids))
	for i, d := range out.Docs {
		if d.Found {
			srcs[i] = d.Source
		}
	}
	return srcs, nil
}

// diffFields names the top-level fields of two JSON objects whose values
// differ, sorted, leaving out ignore.
func diffFields(a, b json.RawMessage, ignore []string) ([]string, error) {
	decode := func(raw json.RawMessage) (map[string]any, error) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		err := dec.Decode(&m)
		return m, err
	}
	ma, err := decode(a)
	if err != nil {
		return nil, err
	}
	mb, err := decode(b)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, v := range ma {
		if w, ok := mb[k]; (!ok || !reflect.DeepEqual(v, w)) && !slices.Contains(ignore, k) {
			out = append(out, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok && !slices.Contains(ignore, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// errRollback rolls back the PostgreSQL transaction of a shadow batch.
var errRollback = errors.New("elasticsink: roll back")

// esShadow is the sink the worker that builds a shadow index writes to:
// documents go to the shadow index, PostgreSQL writes are rolled back, and
// the checkpoint is kept in memory.
type esShadow struct {
	*shadowlog.Log
	sink       *Sink
	index      string
	projection string
}

func (sh *esShadow) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	if err := sh.Check(p); err != nil {
		return err
	}
	if len(p.Events) > 0 {
		err := sh.sink.pg.BeginTx(ctx, func(ctx context.Context, ptx pgx.Tx) error {
			tx := sh.sink.newTx(ptx, target{index: sh.index})
			if sh.sink.cfg.Version == nil {
				// Numbered like a live batch, from 1 in the fresh shadow
				// index; only one batch is in flight at a time.
				tx.versions = make(map[es.Position]int64, len(p.Events))
				base := sh.Events()
				for i, ev := range p.Events {
					tx.versions[ev.Record.Position] = base + int64(i) + 1
				}
			}
			if err := handle(ctx, tx); err != nil {
				return err
			}
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			return err
		}
	}
	sh.Advance(p)
	return nil
}

func (sh *esShadow) Transient(err error) bool { return sh.sink.Transient(err) }

func (sh *esShadow) BatchSize() int { return sh.sink.BatchSize() }

// build runs w until the shadow has applied the log up to until (or the
// head of the log, when until is past it), reporting its progress as cfg
// asks.
func (sh *esShadow) build(ctx context.Context, store es.Store, w *projections.Worker[*Tx], until es.Position, cfg VerifyConfig) error {
	var meter *projections.ProgressMeter
	if cfg.Progress != nil {
		cp, _ := sh.Checkpoint(ctx, sh.projection)
		var err error
		if meter, err = projections.NewProgressMeter(ctx, store, sh.projection, until, cp.Position); err != nil {
			return err
		}
	}
	return sh.Build(ctx, store, w.Run, until, cfg.ProgressEvery, func(at es.Position) {
		if meter == nil {
			return
		}
		if pr, err := meter.Progress(ctx, at, false); err == nil {
			cfg.Progress(pr)
		}
	})
}

// verifyRenamed runs a projection under the verification's name.
type verifyRenamed struct {
	projections.Projection[*Tx]
	name string
}

func (r verifyRenamed) Name() string { return r.name }
