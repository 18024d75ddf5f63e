package pgsink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// Worker configures the worker that builds the shadow generation; use
	// the live worker's error policy. Its Logger defaults to slog.Default().
	Worker projections.Config
	// Progress, when set, is called about every ProgressEvery while the
	// shadow is built, and once when it is built.
	Progress func(projections.RebuildProgress)
	// ProgressEvery defaults to 1s.
	ProgressEvery time.Duration
	// Samples caps the differences kept per table in [TableDrift.Samples];
	// all are counted. Defaults to 20.
	Samples int
	// Ignore names columns, as "table.column", that are not compared: those
	// a handler fills with the time or another value a replay cannot
	// reproduce. Defaults to none.
	Ignore []string
}

// Drift is what [Sink.Verify] found: how the live read model differs from a
// rebuild of it at the same log position.
type Drift struct {
	Projection string `json:"projection"`
	// Position is the checkpoint both sides were compared at.
	Position es.Position `json:"position"`
	// Events counts the events the rebuild applied.
	Events int64 `json:"events"`
	// Tables holds one entry per table of the projection, in the order of
	// [Rebuildable.Tables].
	Tables []TableDrift `json:"tables"`
}

// Differences counts the rows that differ, in every table.
func (d Drift) Differences() int64 {
	var n int64
	for _, t := range d.Tables {
		n += t.Missing + t.Extra + t.Different
	}
	return n
}

// Equal reports whether the live read model equals its rebuild.
func (d Drift) Equal() bool { return d.Differences() == 0 }

// TableDrift is the drift of one table.
type TableDrift struct {
	Table string `json:"table"`
	// Key names the columns rows are matched by: the primary key, or every
	// column (less the ignored ones) of a table that has none.
	Key []string `json:"key"`
	// LiveRows and RebuiltRows count the rows of each side.
	LiveRows    int64 `json:"live_rows"`
	RebuiltRows int64 `json:"rebuilt_rows"`
	// Missing counts rows the rebuild has and the live table lacks, Extra
	// rows the live table has and the rebuild lacks, Different rows both
	// have with a different value in some column.
	Missing   int64 `json:"missing"`
	Extra     int64 `json:"extra"`
	Different int64 `json:"different"`
	// Samples are the first differences in key order, up to
	// [VerifyConfig.Samples].
	Samples []RowDiff `json:"samples"`
}

// RowDiff is a row that differs.
type RowDiff struct {
	Kind projections.DiffKind `json:"kind"`
	// Key holds the values of [TableDrift.Key], as text.
	Key []string `json:"key"`
	// Columns names the columns whose values differ (projections.DiffDifferent).
	Columns []string `json:"columns,omitempty"`
	// Live and Rebuilt are the rows as JSON objects; nil for the side that
	// lacks the row.
	Live    json.RawMessage `json:"live,omitempty"`
	Rebuilt json.RawMessage `json:"rebuilt,omitempty"`
}

// Verify rebuilds p into a shadow generation of its tables and compares it,
// row by row, with the live tables at the same log position; then it drops
// the shadow. The live tables keep serving and the live worker keeps
// running throughout; nothing of the live model changes.
//
// Rows are matched by primary key (by the whole row in a table that has
// none) and compared column by column, as their to_jsonb values. The
// result counts the rows missing from the live table, extra in it and
// different, with up to cfg.Samples of each table's differences in key
// order. A Drift that is not [Drift.Equal] is not an error: the error is
// for a verification that could not be done.
//
// Both sides are compared at one log position, the live checkpoint: the
// shadow is first built up to the live checkpoint as it is when Verify
// starts; then one REPEATABLE READ transaction reads the live checkpoint
// and, in the same snapshot, the live tables (a batch commits its rows and
// its checkpoint together, so the snapshot shows exactly the rows of that
// checkpoint), while the shadow is built on up to that checkpoint and no
// further (the log it reads ends there). The live worker is never held;
// the snapshot only keeps VACUUM from removing rows that became dead since
// it began, until the comparison ends.
//
// Events the shadow cannot handle follow cfg.Worker.ErrorPolicy: under
// PolicyStop (the default) Verify fails with the [*projections.StalledError].
// One Verify of a projection runs at a time ([projections.ErrVerifyRunning]);
// a Verify that was interrupted leaves shadow tables (named with the suffix
// __v and digits) that the next Verify of the projection drops.
func (s *Sink) Verify(ctx context.Context, store es.Store, reg *es.Registry, p Rebuildable, cfg VerifyConfig) (Drift, error) {
	drift, err := s.verify(ctx, store, reg, p, cfg)
	if err != nil {
		return Drift{}, fmt.Errorf("pgsink: verify %s: %w", p.Name(), err)
	}
	return drift, nil
}

func (s *Sink) verify(ctx context.Context, store es.Store, reg *es.Registry, p Rebuildable, cfg VerifyConfig) (Drift, error) {
	name := p.Name()
	cfg.Samples = cmp.Or(cfg.Samples, VerifySamplesDefault)
	cfg.ProgressEvery = cmp.Or(cfg.ProgressEvery, VerifyProgressEveryDefault)
	ignore, err := ignored(p.Tables(), cfg.Ignore)
	if err != nil {
		return Drift{}, err
	}
	lease, got, err := s.TryLock(ctx, name+projections.VerifySuffix)
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

	sh := &shadow{Log: &shadowlog.Log{}, sink: s, suffix: fmt.Sprintf("__v%d", time.Now().UnixMilli()), projection: name}
	if err := s.dropShadows(ctx, p.Tables()); err != nil {
		return Drift{}, err
	}
	// A shadow left behind is dropped by the next verification.
	defer func() { _ = s.dropShadows(context.WithoutCancel(ctx), p.Tables()) }()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return p.Setup(ctx, &Tx{Tx: tx, readSchema: s.cfg.ReadSchema, suffix: sh.suffix})
	})
	if err != nil {
		return Drift{}, fmt.Errorf("create the shadow tables: %w", err)
	}
	build := func(until es.Position) error {
		w := projections.NewWorker(sh.Store(store), reg, projections.Sink[*Tx](sh),
			projections.Projection[*Tx](renamed{p, name + projections.VerifySuffix}), cfg.Worker)
		return sh.build(ctx, store, w, until, cfg)
	}

	// Most of the way without a snapshot: up to the live checkpoint as it
	// is now.
	cp, err := s.Checkpoint(ctx, name)
	if err != nil {
		return Drift{}, err
	}
	if err := build(cp.Position); err != nil {
		return Drift{}, err
	}
	// The rest in the snapshot the live tables are read in.
	snap, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Drift{}, err
	}
	defer snap.Rollback(context.WithoutCancel(ctx))
	cp, err = s.checkpoint(ctx, snap, name)
	if err != nil {
		return Drift{}, err
	}
	if err := build(cp.Position); err != nil {
		return Drift{}, err
	}
	drift := Drift{Projection: name, Position: cp.Position, Events: sh.Events()}
	for _, t := range p.Tables() {
		td, err := s.compareTable(ctx, snap, t, sh.suffix, ignore[t], cfg.Samples)
		if err != nil {
			return Drift{}, err
		}
		drift.Tables = append(drift.Tables, td)
	}
	return drift, nil
}

// ignored maps each table to its ignored columns, checking that every
// entry names one of tables.
func ignored(tables, ignore []string) (map[string][]string, error) {
	out := map[string][]string{}
	var errs []error
	for _, ic := range ignore {
		t, c, ok := strings.Cut(ic, ".")
		if !ok || c == "" || !slices.Contains(tables, t) {
			errs = append(errs, fmt.Errorf("VerifyConfig.Ignore: %q is not table.column of one of the projection's tables (%s)", ic, strings.Join(tables, ", ")))
			continue
		}
		out[t] = append(out[t], c)
	}
	return out, errors.Join(errs...)
}

// dropShadows drops the shadow tables of tables: those of this
// verification and any an interrupted one left.
func (s *Sink) dropShadows(ctx context.Context, tables []string) error {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN unnest($2::text[]) AS t(name) ON left(c.relname, length(t.name) + 3) = t.name || '__v'
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND substr(c.relname, length(t.name) + 4) ~ '^[0-9]+$'`,
		s.cfg.ReadSchema, tables)
	if err != nil {
		return fmt.Errorf("find shadow tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find shadow tables: %w", err)
	}
	for _, n := range names {
		if _, err := s.pool.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.cfg.ReadSchema, n}.Sanitize()); err != nil {
			return fmt.Errorf("drop shadow table %s: %w", n, err)
		}
	}
	return nil
}

// shadow is the sink the worker that builds a verification's shadow
// generation writes to: handlers write to the shadow tables, and the
// checkpoint is kept in memory, since the shadow lives only as long as
// Verify.
type shadow struct {
	*shadowlog.Log
	sink       *Sink
	suffix     string
	projection string
}

var _ projections.Sink[*Tx] = (*shadow)(nil)

func (sh *shadow) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	if err := sh.Check(p); err != nil {
		return err
	}
	if len(p.Events) > 0 {
		err := pgx.BeginFunc(ctx, sh.sink.pool, func(tx pgx.Tx) error {
			return handle(ctx, &Tx{Tx: tx, readSchema: sh.sink.cfg.ReadSchema, suffix: sh.suffix})
		})
		if err != nil {
			return err
		}
	}
	sh.Advance(p)
	return nil
}

func (sh *shadow) Transient(err error) bool { return IsTransient(err) }

// build runs w until the shadow has applied the log up to until,
// reporting its progress as cfg asks.
func (sh *shadow) build(ctx context.Context, store es.Store, w *projections.Worker[*Tx], until es.Position, cfg VerifyConfig) error {
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

// compareTable compares the live table t, read in snap, with its shadow.
func (s *Sink) compareTable(ctx context.Context, snap pgx.Tx, t, suffix string, ignore []string, samples int) (TableDrift, error) {
	live := pgx.Identifier{s.cfg.ReadSchema, t}
	td := TableDrift{Table: t, Samples: []RowDiff{}}
	rows, err := snap.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, live.Sanitize())
	if err != nil {
		return td, fmt.Errorf("read the primary key of %s: %w", t, err)
	}
	td.Key, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return td, fmt.Errorf("read the primary key of %s: %w", t, err)
	}
	ignore = append([]string{}, ignore...) // never nil: a text[] parameter
	var keyExpr, order []string
	for _, k := range td.Key {
		e := pgx.Identifier{k}.Sanitize() + "::text"
		keyExpr, order = append(keyExpr, e), append(order, e+` COLLATE "C"`)
	}
	rowExpr := `(to_jsonb(t) - $1::text[])`
	if len(td.Key) == 0 {
		td.Key = []string{"*"}
		keyExpr, order = []string{rowExpr + "::text"}, []string{rowExpr + `::text COLLATE "C"`}
	}
	query := func(table pgx.Identifier) string {
		return "SELECT ARRAY[" + strings.Join(keyExpr, ", ") + "], " + rowExpr + "::text FROM " + table.Sanitize() +
			" t ORDER BY " + strings.Join(order, ", ")
	}
	liveRows, err := snap.Query(ctx, query(live), ignore)
	if err != nil {
		return td, fmt.Errorf("read %s: %w", t, err)
	}
	defer liveRows.Close()
	shadowRows, err := s.pool.Query(ctx, query(pgx.Identifier{s.cfg.ReadSchema, t + suffix}), ignore)
	if err != nil {
		return td, fmt.Errorf("read the shadow of %s: %w", t, err)
	}
	defer shadowRows.Close()

	type row struct {
		key []string
		val string
		ok  bool
	}
	next := func(r pgx.Rows, n *int64) (row, error) {
		if !r.Next() {
			return row{}, r.Err()
		}
		var x row
		x.ok = true
		*n++
		return x, r.Scan(&x.key, &x.val)
	}
	add := func(d RowDiff) {
		if len(td.Samples) < samples {
			td.Samples = append(td.Samples, d)
		}
	}
	l, err := next(liveRows, &td.LiveRows)
	if err != nil {
		return td, fmt.Errorf("read %s: %w", t, err)
	}
	r, err := next(shadowRows, &td.RebuiltRows)
	if err != nil {
		return td, fmt.Errorf("read the shadow of %s: %w", t, err)
	}
	for l.ok || r.ok {
		c := 0
		switch {
		case !l.ok:
			c = 1
		case !r.ok:
			c = -1
		default:
			c = slices.Compare(l.key, r.key)
		}
		switch {
		case c < 0:
			td.Extra++
			add(RowDiff{Kind: projections.DiffExtra, Key: l.key, Live: json.RawMessage(l.val)})
		case c > 0:
			td.Missing++
			add(RowDiff{Kind: projections.DiffMissing, Key: r.key, Rebuilt: json.RawMessage(r.val)})
		case l.val != r.val:
			td.Different++
			cols, err := diffColumns(l.val, r.val)
			if err != nil {
				return td, fmt.Errorf("compare rows of %s: %w", t, err)
			}
			add(RowDiff{Kind: projections.DiffDifferent, Key: l.key, Columns: cols, Live: json.RawMessage(l.val), Rebuilt: json.RawMessage(r.val)})
		}
		if c <= 0 {
			if l, err = next(liveRows, &td.LiveRows); err != nil {
				return td, fmt.Errorf("read %s: %w", t, err)
			}
		}
		if c >= 0 {
			if r, err = next(shadowRows, &td.RebuiltRows); err != nil {
				return td, fmt.Errorf("read the shadow of %s: %w", t, err)
			}
		}
	}
	return td, nil
}

// diffColumns names the members of two JSON objects that differ, sorted.
func diffColumns(a, b string) ([]string, error) {
	var ma, mb map[string]json.RawMessage
	if err := json.Unmarshal([]byte(a), &ma); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(b), &mb); err != nil {
		return nil, err
	}
	var cols []string
	for k, v := range ma {
		if w, ok := mb[k]; !ok || !bytes.Equal(v, w) {
			cols = append(cols, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			cols = append(cols, k)
		}
	}
	slices.Sort(cols)
	return cols, nil
}

// HoldCheckpoint holds the checkpoint of a projection in a transaction of
// its own (its advisory lock, as a batch holds it) and returns it as held:
// no batch of the projection starts until release is called, so none
// commits, and no batch of an elasticsink projection starts writing. A
// batch in flight commits first. Verifications of read models that cannot
// be read in one snapshot with their checkpoint use it. The transaction
// writes nothing and so gets no ID: it does not hold back the readers of a
// pgstore log.
func (s *Sink) HoldCheckpoint(ctx context.Context, name string) (cp projections.Checkpoint, release func(), err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return cp, nil, fmt.Errorf("pgsink: hold the checkpoint of %s: %w", name, err)
	}
	release = func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	err = s.lockCheckpoint(ctx, tx, name)
	if err == nil {
		cp, err = s.checkpoint(ctx, tx, name)
	}
	if err != nil {
		release()
		return cp, nil, fmt.Errorf("pgsink: hold the checkpoint of %s: %w", name, err)
	}
	return cp, release, nil
}
