package elasticsink_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// start runs a worker in the background; the returned channel has Run's
// error.
func (e env) start(t *testing.T, cfg projections.Config) (<-chan error, context.CancelFunc) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 200*time.Millisecond
	w := elasticsink.NewWorker(e.store, e.reg, e.sink, e.proj, cfg)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		done <- w.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return done, cancel
}

// deleteIndices deletes the generations of the projection's index, by
// name (Elasticsearch refuses wildcards in deletes).
func (e env) deleteIndices(t *testing.T) {
	t.Helper()
	get := e.client.Indices.GetSettings
	res, err := get(get.WithIndex(e.proj.alias+"-g*"), get.WithName("index.uuid"))
	if err != nil {
		t.Fatal(err)
	}
	var found map[string]any
	err = json.NewDecoder(res.Body).Decode(&found)
	res.Body.Close()
	if err != nil || res.IsError() || len(found) == 0 {
		t.Fatalf("list %s-g*: %s, %v: %v", e.proj.alias, res.Status(), err, found)
	}
	var names []string
	for n := range found {
		names = append(names, n)
	}
	del := e.client.Indices.Delete
	if res, err = del(names); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.IsError() {
		t.Fatalf("delete %v: %s", names, res.Status())
	}
}

func (e env) status(t *testing.T) projections.Status {
	t.Helper()
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.pg}, e.proj.Name())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// wantStalled checks that Run returned a StalledError naming the lost
// index, and that status shows it.
func (e env) wantStalled(t *testing.T, err error, what string) {
	t.Helper()
	var stalled *projections.StalledError
	if !errors.As(err, &stalled) || !strings.Contains(err.Error(), what) {
		t.Fatalf("Run = %v, want a StalledError saying %q", err, what)
	}
	st := e.status(t)
	if st.State != projections.StateStalled || st.LastError == nil || !strings.Contains(st.LastError.Error, what) ||
		!strings.Contains(st.LastError.Error, "projections rebuild "+e.proj.Name()) {
		t.Errorf("status = %s, last error %v; want stalled, saying %q and how to rebuild", st.State, st.LastError, what)
	}
}

// The index behind the alias is deleted under a running projection: the
// next batch stalls it, nothing is written to an index made up on the
// spot, and a rebuild brings every document back and resumes it.
func TestIndexDeletedStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done, _ := e.start(t, projections.Config{})
	e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	first := e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"})
	e.waitFor(t, first)
	e.deleteIndices(t)
	e.append(t, "order-3", orderPlaced{Order: "o3", Customer: "cy", Product: "p", Total: 3, Status: "placed"})
	e.wantStalled(t, <-done, "the alias "+e.proj.alias+" is gone")
	if st := e.status(t); st.Checkpoint != first {
		t.Errorf("checkpoint = %s, want %s: the batch after the loss must not count", st.Checkpoint, first)
	}
	if err := e.sink.Rebuild(t.Context(), e.store, e.reg, e.proj, elasticsink.RebuildConfig{Worker: projections.Config{Logger: quiet}}); err != nil {
		t.Fatal(err)
	}
	done, _ = e.start(t, projections.Config{})
	later := e.append(t, "order-4", orderPlaced{Order: "o4", Customer: "dee", Product: "p", Total: 4, Status: "placed"})
	e.waitFor(t, later)
	docs := e.docs(t)
	if len(docs) != 4 {
		t.Errorf("%d documents after the rebuild, want 4: %v", len(docs), docs)
	}
	if st := e.status(t); st.State != projections.StateRunning || st.Checkpoint != later {
		t.Errorf("status = %s at %s, want running at %s", st.State, st.Checkpoint, later)
	}
	select {
	case err := <-done:
		t.Errorf("Run returned %v after the rebuild", err)
	default:
	}
}

// The index behind the alias is replaced by an empty one of the same name
// (what a new Elasticsearch node and EnsureIndex give): the worker stalls
// as it starts.
func TestIndexReplacedStalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	done, cancel := e.start(t, projections.Config{})
	last := e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	e.waitFor(t, last)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.deleteIndices(t)
	if _, err := e.sink.EnsureIndex(t.Context(), e.proj); err != nil {
		t.Fatal(err)
	}
	done, _ = e.start(t, projections.Config{})
	e.wantStalled(t, <-done, "the alias "+e.proj.alias+" points at index "+e.proj.alias+"-g1 (uuid ")
}

// With OnIndexLost set to RebuildIndex, a worker whose index was deleted
// fills a new one from the start of the log: the documents come back.
func TestIndexLostRebuildsWhenConfigured(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, elastictest.Client(t), elasticsink.Config{OnIndexLost: elasticsink.RebuildIndex})
	done, _ := e.start(t, projections.Config{})
	e.append(t, "order-1", orderPlaced{Order: "o1", Customer: "ada", Product: "p", Total: 1, Status: "placed"})
	first := e.append(t, "order-2", orderPlaced{Order: "o2", Customer: "bob", Product: "p", Total: 2, Status: "placed"},
		statusChanged{Order: "o2", Status: "paid"})
	e.waitFor(t, first)
	e.deleteIndices(t)
	last := e.append(t, "order-3", orderPlaced{Order: "o3", Customer: "cy", Product: "p", Total: 3, Status: "placed"})
	e.waitFor(t, last)
	docs := e.docs(t)
	if len(docs) != 3 || docs["o2"].Source.Status != "paid" {
		t.Errorf("documents = %v, want o1, o2 (paid) and o3", docs)
	}
	if st := e.status(t); st.State != projections.StateRunning || st.Checkpoint != last {
		t.Errorf("status = %s at %s, want running at %s", st.State, st.Checkpoint, last)
	}
	select {
	case err := <-done:
		t.Errorf("Run returned %v", err)
	default:
	}
}
