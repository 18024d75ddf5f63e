package elasticsink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

func TestIndexUpdateDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.run(t, projections.Config{})
	p1 := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "red chair", Total: 120, Status: "placed"})
	e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "blue table", Total: 300, Status: "placed"},
		statusChanged{Order: "o2", Status: "paid"})
	p3 := e.append(t, "order-2", statusChanged{Order: "o2", Status: "shipped"})
	e.append(t, "order-3", orderPlaced{Order: "o3", Customer: "cy", Product: "lamp", Total: 20, Status: "placed"})
	last := e.append(t, "order-3", orderCancelled{Order: "o3"})
	e.waitFor(t, last)

	docs := e.docs(t)
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2 (o3 deleted): %v", len(docs), docs)
	}
	// Versions number the projection's events from 1: o1 by the first,
	// o2 last by the fourth.
	if d := docs["o1"]; d.Source.Customer != "ada" || d.Source.Status != "placed" || d.Version != 1 {
		t.Errorf("o1 = %+v, want ada placed at version 1 (event at %s)", d, p1)
	}
	if d := docs["o2"]; d.Source.Customer != "bob" || d.Source.Status != "shipped" || d.Version != 4 {
		t.Errorf("o2 = %+v, want bob shipped at version 4 (event at %s)", d, p3)
	}
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.sink}, e.proj.Name())
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != last || st.State != projections.StateRunning {
		t.Errorf("status = %+v, want running at %s", st, last)
	}
	// The typed search: by customer and by a word of the product name.
	r, err := elasticsink.Search[orderDoc](t.Context(), e.sink.Client(), e.proj.alias,
		map[string]any{"query": map[string]any{"match": map[string]any{"product": "table"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Total != 1 || r.Hits[0].ID != "o2" {
		t.Errorf("search for table = %+v, want o2", r)
	}
}

// A reset to an earlier position replays the events after it with versions
// above every version stored, so the replay takes effect: the documents
// end as a rebuild would leave them, whatever the batches.
func TestReplayAfterReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.run(t, projections.Config{BatchSize: 3})
	var last es.Position
	for i := range 20 {
		last = e.append(t, "order-r", orderPlaced{Order: "o" + string(rune('a'+i%5)), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	e.waitFor(t, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before := e.docs(t)

	if err := e.pg.Reset(t.Context(), e.proj.Name(), es.Start); err != nil {
		t.Fatal(err)
	}
	stop = e.run(t, projections.Config{BatchSize: 7})
	e.waitFor(t, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after := e.docs(t)
	if len(after) != 5 || len(before) != 5 {
		t.Fatalf("documents before %d, after %d; want 5", len(before), len(after))
	}
	for id, b := range before {
		a := after[id]
		if a.Source != b.Source {
			t.Errorf("%s source changed by the replay: %+v, then %+v", id, b.Source, a.Source)
		}
		if a.Version <= b.Version {
			t.Errorf("%s version %d after the replay, want above %d", id, a.Version, b.Version)
		}
	}
	if d := after["oa"]; d.Source.Total != float64(15) {
		t.Errorf("oa total = %v, want 15 (its last event)", d.Source.Total)
	}
}

// renaming writes every customer name upper-cased: a handler changed
// between the first run and a replay.
type renaming struct{ orderSearch }

func (p renaming) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		if e, ok := ev.Data.(orderPlaced); ok {
			e.Customer = strings.ToUpper(e.Customer)
			ev.Data = e
		}
		if err := p.orderSearch.HandleBatch(ctx, tx, []projections.Event{ev}); err != nil {
			return err
		}
	}
	return nil
}

// The reason to reset: a fixed handler replayed over the documents it
// wrote before must replace them, not be dropped as "already applied".
func TestReplayWithChangedHandlerTakesEffect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	last := e.append(t, "order-1", statusChanged{Order: "o1", Status: "paid"})
	stop := e.run(t, projections.Config{})
	e.waitFor(t, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Reset(t.Context(), e.proj.Name(), es.Start); err != nil {
		t.Fatal(err)
	}
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, renaming{e.proj}, projections.Config{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.waitFor(t, last)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := orderDoc{Customer: "ADA", Product: "p", Total: float64(1), Status: "paid", Stream: "order-1"}
	if got := e.docs(t)["o1"].Source; got != want {
		t.Errorf("o1 after the replay = %+v, want %+v", got, want)
	}
}

// A batch whose documents were sent but whose checkpoint did not commit
// (a crash between the two) is sent again with the same versions: the
// writes conflict, count as applied, and the checkpoint moves.
func TestBatchAppliedTwiceKeepsVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	head := e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"})
	events := e.events(t, head)
	p := projections.ApplyParams{Projection: e.proj.Name(), From: es.Start, To: head, Events: events}
	crash := errors.New("crash before the checkpoint commits")
	err := e.sink.Apply(t.Context(), p, func(ctx context.Context, tx *elasticsink.Tx) error {
		if err := e.proj.HandleBatch(ctx, tx, events); err != nil {
			return err
		}
		if err := tx.Flush(ctx); err != nil {
			return err
		}
		return crash
	})
	if !errors.Is(err, crash) {
		t.Fatalf("Apply = %v, want the crash", err)
	}
	first := e.docs(t)
	err = e.sink.Apply(t.Context(), p, func(ctx context.Context, tx *elasticsink.Tx) error { return e.proj.HandleBatch(ctx, tx, events) })
	if err != nil {
		t.Fatal(err)
	}
	second := e.docs(t)
	for _, id := range []string{"o1", "o2"} {
		if first[id] != second[id] || first[id].Version == 0 {
			t.Errorf("%s = %+v after the first attempt, %+v after the second; want the same, versioned", id, first[id], second[id])
		}
	}
	cp, err := e.sink.Checkpoint(t.Context(), e.proj.Name())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Position != head {
		t.Errorf("checkpoint = %s, want %s", cp.Position, head)
	}
}

// Events for one document applied in the wrong order, as by a worker that
// lost its lease and has not noticed yet: the older write loses.
func TestOutOfOrderWritesKeepNewest(t *testing.T) {
	t.Parallel()
	// Out of log order across batches, only versions derived from the
	// position keep the newer write; the default counter relies on batches
	// being applied in order, which the checkpoint's lock makes sure of.
	e := newEnvWith(t, elastictest.Client(t), elasticsink.Config{Version: elasticsink.PackedVersion})
	e.append(t, "order-x", orderPlaced{Order: "ox", Customer: "old", Product: "p", Total: 1, Status: "placed"})
	e.append(t, "order-x", orderPlaced{Order: "ox", Customer: "new", Product: "p", Total: 2, Status: "placed"})
	// Another test's open transaction may hold readers of the log back for
	// a moment: wait for both records through a subscription.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	var recs []es.Record
	for batch, err := range e.store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if recs = append(recs, batch...); len(recs) >= 2 {
			break
		}
	}
	cancel()
	if len(recs) != 2 {
		t.Fatalf("read %d records, want 2", len(recs))
	}
	events := make([]projections.Event, len(recs))
	for i, r := range recs {
		v, err := e.reg.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		events[i] = projections.Event{Record: r, Data: v}
	}
	// The newer event first, in one batch, then the older in another.
	apply := func(from, to es.Position, evs ...projections.Event) {
		t.Helper()
		err := e.sink.Apply(t.Context(), projections.ApplyParams{Projection: e.proj.Name(), From: from, To: to, Events: evs},
			func(ctx context.Context, tx *elasticsink.Tx) error { return e.proj.HandleBatch(ctx, tx, evs) })
		if err != nil {
			t.Fatal(err)
		}
	}
	apply(es.Start, recs[0].Position, events[1])
	apply(recs[0].Position, recs[1].Position, events[0])
	docs := e.docs(t)
	if d := docs["ox"]; d.Source.Customer != "new" || d.Version != version(t, recs[1].Position) {
		t.Errorf("ox = %+v, want the newer event's state and version %d", d, version(t, recs[1].Position))
	}
	// Within one batch too: the Tx keeps the later event's state.
	e2 := newEnv(t)
	head := e2.append(t, "order-y", orderPlaced{Order: "oy", Customer: "first", Product: "p", Total: 1, Status: "placed"},
		orderPlaced{Order: "oy", Customer: "second", Product: "p", Total: 2, Status: "placed"})
	stop := e2.run(t, projections.Config{})
	e2.waitFor(t, head)
	stop()
	if d := e2.docs(t)["oy"]; d.Source.Customer != "second" || d.Version != 2 {
		t.Errorf("oy = %+v, want second at version 2 (event at %s)", d, head)
	}
}

// A document that does not fit the mapping stops the projection at its
// event, with Elasticsearch's reason, under PolicyStop.
func TestMappingErrorStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := e.append(t, "order-g", orderPlaced{Order: "g1", Customer: "ada", Product: "p", Total: 1, Status: "placed"},
		orderPlaced{Order: "g2", Customer: "ada", Product: "p", Total: 2, Status: "placed"})
	bad := e.append(t, "order-b", orderPlaced{Order: "b1", Customer: "bob", Product: "p", Total: "lots", Status: "placed"})
	e.append(t, "order-h", orderPlaced{Order: "h1", Customer: "cy", Product: "p", Total: 3, Status: "placed"})
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, e.proj, projections.Config{Logger: quiet})
	err := w.Run(t.Context())
	var stalled *projections.StalledError
	if !errors.As(err, &stalled) {
		t.Fatalf("Run = %v, want a StalledError", err)
	}
	f := stalled.Failure
	if f.Stream != "order-b" || f.Position != bad || f.Type != "OrderPlaced" || !strings.Contains(f.Error, "failed to parse field [total]") ||
		!strings.Contains(f.Error, " "+e.proj.alias+"-g1/b1: ") {
		t.Errorf("failure = %s, want order-b at %s failing to parse total in %s-g1/b1", f, bad, e.proj.alias)
	}
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.sink}, e.proj.Name())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateStalled || st.Checkpoint != good || st.LastError == nil || st.LastError.Position != bad {
		t.Errorf("status = %+v, want stalled at %s after the event at %s", st, good, bad)
	}
	docs := e.docs(t)
	if _, ok := docs["g2"]; !ok {
		t.Errorf("g2 missing: the events before the bad one must be applied")
	}
}

// Under PolicyDeadLetter the refused document's event is parked and the
// projection goes on.
func TestMappingErrorDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, "order-g", orderPlaced{Order: "g1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	bad := e.append(t, "order-b", orderPlaced{Order: "b1", Customer: "bob", Product: "p", Total: "lots", Status: "placed"})
	last := e.append(t, "order-h", orderPlaced{Order: "h1", Customer: "cy", Product: "p", Total: 3, Status: "placed"})
	e.run(t, projections.Config{ErrorPolicy: projections.PolicyDeadLetter})
	e.waitFor(t, last)
	docs := e.docs(t)
	if _, ok := docs["b1"]; ok || len(docs) != 2 {
		t.Errorf("documents = %v, want g1 and h1", docs)
	}
	var (
		stream, reason string
		prepare        int64
	)
	err := e.pool.QueryRow(t.Context(), `SELECT stream_id, prepare_pos, error FROM `+
		pgx.Identifier{e.pg.Schema(), "projection_dead_letters"}.Sanitize()+` WHERE projection = $1`, e.proj.Name()).
		Scan(&stream, &prepare, &reason)
	if err != nil {
		t.Fatal(err)
	}
	if stream != "order-b" || uint64(prepare) != bad.Prepare || !strings.Contains(reason, "failed to parse field [total]") {
		t.Errorf("dead letter = %s at %d: %s; want order-b at %d failing to parse total", stream, prepare, reason, bad.Prepare)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := elasticsink.Config{FlushActions: -1, Concurrency: -2, Refresh: "soon"}.Validate()
	for _, want := range []string{"FlushActions", "Concurrency", "Refresh"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to name %s", err, want)
		}
	}
	if err := (elasticsink.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestPackedVersion(t *testing.T) {
	t.Parallel()
	ps := []es.Position{{Commit: 1, Prepare: 1}, {Commit: 1, Prepare: 9}, {Commit: 2, Prepare: 3},
		{Commit: 2, Prepare: elasticsink.MaxPackedPrepare}, {Commit: elasticsink.MaxPackedCommit, Prepare: 0}}
	var prev int64
	for _, p := range ps {
		v, err := elasticsink.PackedVersion(p)
		if err != nil || v <= prev || v < 0 {
			t.Errorf("PackedVersion(%s) = %d, %v; want above %d", p, v, err, prev)
		}
		prev = v
	}
	for _, p := range []es.Position{{Commit: elasticsink.MaxPackedCommit + 1}, {Commit: 1, Prepare: elasticsink.MaxPackedPrepare + 1}} {
		if _, err := elasticsink.PackedVersion(p); !errors.Is(err, elasticsink.ErrVersionRange) {
			t.Errorf("PackedVersion(%s) error = %v, want ErrVersionRange", p, err)
		}
	}
}

// twoAliases writes every order to two indices, so that one bulk request
// holds actions for both.
type twoAliases struct {
	orderSearch
	other string
}

func (p twoAliases) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	if err := p.orderSearch.HandleBatch(ctx, tx, events); err != nil {
		return err
	}
	for _, ev := range events {
		if e, ok := ev.Data.(orderPlaced); ok {
			if err := tx.Index(ev, p.other, e.Order, orderDoc{Customer: e.Customer, Product: e.Product, Total: e.Total, Status: e.Status, Stream: ev.Record.Stream}); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestOneBatchTwoIndices(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := orderSearch{alias: e.proj.alias + "-other"}
	t.Cleanup(func() {
		del := e.client.Indices.Delete
		if res, err := del([]string{other.alias + "-g*"}, del.WithIgnoreUnavailable(true), del.WithAllowNoIndices(true)); err == nil {
			res.Body.Close()
		}
	})
	if _, err := e.sink.EnsureIndex(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "chair", Total: 1, Status: "placed"})
	last := e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "table", Total: 2, Status: "placed"})
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, twoAliases{e.proj, other.alias}, projections.Config{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.waitFor(t, last)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, alias := range []string{e.proj.alias, other.alias} {
		e2 := e
		e2.proj = orderSearch{alias: alias}
		docs := e2.docs(t)
		if len(docs) != 2 || docs["o1"].Source.Customer != "ada" || docs["o2"].Source.Customer != "bob" {
			t.Errorf("%s holds %v, want o1 and o2", alias, docs)
		}
	}
}

// sizedSearch is orderSearch that records the size of each batch.
type sizedSearch struct {
	orderSearch
	mu    *sync.Mutex
	sizes *[]int
}

func (p sizedSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	p.mu.Lock()
	*p.sizes = append(*p.sizes, len(events))
	p.mu.Unlock()
	return p.orderSearch.HandleBatch(ctx, tx, events)
}

func (p sizedSearch) taken() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(*p.sizes)
}

// A worker left at the default batch size takes batches that fill the
// sink's concurrent bulk requests (FlushActions × Concurrency events), live
// and in a rebuild; a batch size the user sets wins.
func TestBatchSizeFromSink(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, elastictest.Client(t), elasticsink.Config{FlushActions: 3, Concurrency: 2})
	if got, want := elasticsink.New(e.client, e.pg, elasticsink.Config{}).BatchSize(),
		elasticsink.FlushActionsDefault*elasticsink.ConcurrencyDefault; got != want {
		t.Errorf("BatchSize() with the default Config = %d, want %d", got, want)
	}
	var events []any
	for i := range 14 {
		events = append(events, orderPlaced{Order: fmt.Sprintf("o%d", i), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	head := e.append(t, "order-sized", events...)
	p := sizedSearch{orderSearch: e.proj, mu: new(sync.Mutex), sizes: new([]int)}
	for _, c := range []struct {
		name  string
		batch int
		run   func(projections.Config)
		want  []int
	}{
		{name: "live", run: func(cfg projections.Config) { runUntil(t, e, p, cfg, head) }, want: []int{6, 6, 2}},
		{name: "live, set by the user", batch: 5, run: func(cfg projections.Config) {
			if err := e.pg.Reset(t.Context(), p.Name(), es.Start); err != nil {
				t.Fatal(err)
			}
			runUntil(t, e, p, cfg, head)
		}, want: []int{5, 5, 4}},
		{name: "rebuild", run: func(cfg projections.Config) {
			if err := e.sink.Rebuild(t.Context(), e.store, e.reg, p, elasticsink.RebuildConfig{Worker: cfg}); err != nil {
				t.Fatal(err)
			}
		}, want: []int{6, 6, 2}},
	} {
		*p.sizes = nil
		c.run(projections.Config{Logger: quiet, BatchSize: c.batch})
		if got := p.taken(); !slices.Equal(got, c.want) {
			t.Errorf("%s: batch sizes = %v, want %v", c.name, got, c.want)
		}
	}
	if docs := e.docs(t); len(docs) != 14 {
		t.Errorf("got %d documents, want 14", len(docs))
	}
}

// runUntil runs a worker of p until its checkpoint is at head.
func runUntil(t *testing.T, e env, p elasticsink.Projection, cfg projections.Config, head es.Position) {
	t.Helper()
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, p, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.waitFor(t, head)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
