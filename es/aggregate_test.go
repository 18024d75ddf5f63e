package es_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
)

// cart is a tiny aggregate: a bag of SKUs with quantities.
type cart struct {
	ID    string         `json:"id"`
	Items map[string]int `json:"items"`
	Seen  int            `json:"seen"` // events applied, snapshot included
}

func newCart(id string) *cart { return &cart{ID: id, Items: map[string]int{}} }

func (c *cart) Apply(event any) error {
	switch e := event.(type) {
	case itemAdded:
		c.Items[e.SKU] += e.Quantity
	case itemRemoved:
		delete(c.Items, e.SKU)
	default:
		return fmt.Errorf("cart: unexpected event %T", event)
	}
	c.Seen++
	return nil
}

// countingSnapshots wraps a real snapshot store and counts saves.
type countingSnapshots struct {
	es.SnapshotStore
	saves int
}

func (c *countingSnapshots) SaveSnapshot(ctx context.Context, s es.Snapshot) error {
	c.saves++
	return c.SnapshotStore.SaveSnapshot(ctx, s)
}

func TestRepositoryLoadSave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memstore.New()
	repo := es.NewRepository(store, newTestRegistry(), newCart, es.RepositoryConfig{StreamPrefix: "cart-"})

	root, err := repo.Load(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	if root.Exists() || root.Version != 0 || root.Stream != "cart-1" {
		t.Fatalf("new aggregate: %+v", root)
	}
	res, err := repo.Save(ctx, root, []any{itemAdded{"a", 2}, itemAdded{"b", 1}}, es.SaveOptions{Metadata: es.Metadata{"user": "u1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || root.Version != 2 || root.State.Items["a"] != 2 {
		t.Fatalf("after save: result %+v, root version %d, state %+v", res, root.Version, root.State)
	}
	head, err := store.Head(ctx)
	if err != nil || head != res.Position {
		t.Fatalf("Head() = %v, %v; want the save's position %v", head, err, res.Position)
	}

	again, err := repo.Load(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != 2 || again.State.Items["a"] != 2 || again.State.Items["b"] != 1 {
		t.Fatalf("reloaded: version %d, state %+v", again.Version, again.State)
	}
	recs, err := store.ReadStream(ctx, "cart-1", es.ReadStreamOptions{})
	if err != nil || len(recs) != 2 || recs[0].Type != "ItemAdded" || recs[1].Metadata["user"] != "u1" {
		t.Fatalf("stored records: %+v, %v", recs, err)
	}

	// A stale root loses the race and is left as it was.
	if _, err := repo.Save(ctx, again, []any{itemRemoved{"a"}}, es.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = repo.Save(ctx, root, []any{itemAdded{"c", 1}}, es.SaveOptions{})
	var conflict *es.VersionConflictError
	if !errors.As(err, &conflict) || conflict.Actual != 3 || conflict.Stream != "cart-1" {
		t.Fatalf("stale save: got %v, want a VersionConflictError at actual version 3", err)
	}
	if root.Version != 2 || root.State.Items["c"] != 0 {
		t.Fatalf("a failed save changed the root: version %d, state %+v", root.Version, root.State)
	}

	if res, err := repo.Save(ctx, again, nil, es.SaveOptions{}); err != nil || res.Version != 3 {
		t.Fatalf("saving no events: %+v, %v", res, err)
	}
	if _, err := repo.Save(ctx, again, []any{struct{}{}}, es.SaveOptions{}); !errors.Is(err, es.ErrUnknownEventType) {
		t.Fatalf("saving an unregistered event: got %v", err)
	}
}

func TestRepositoryLoadErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memstore.New()
	repo := es.NewRepository(store, newTestRegistry(), newCart, es.RepositoryConfig{})
	if _, err := repo.Load(ctx, ""); err == nil {
		t.Error("Load with an empty id succeeded")
	}
	if _, err := store.Append(ctx, "x", es.NoStream, es.EventData{Type: "Unknown", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Load(ctx, "x"); !errors.Is(err, es.ErrUnknownEventType) {
		t.Errorf("Load over an unknown event type: got %v", err)
	}
}

func TestRepositorySnapshots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := memstore.New()
	snaps := &countingSnapshots{SnapshotStore: store}
	reg := newTestRegistry()
	repo := es.NewRepository(store, reg, newCart, es.RepositoryConfig{Snapshots: snaps, SnapshotEvery: 3})

	root, _ := repo.Load(ctx, "c")
	for i := range 7 {
		if _, err := repo.Save(ctx, root, []any{itemAdded{SKU: "a", Quantity: 1}}, es.SaveOptions{}); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	if snaps.saves != 2 {
		t.Fatalf("took %d snapshots over 7 single-event saves with SnapshotEvery 3, want 2 (at 3 and 6)", snaps.saves)
	}
	snap, err := store.LoadSnapshot(ctx, "c")
	if err != nil || snap.Version != 6 || snap.Revision != "1" {
		t.Fatalf("stored snapshot: %+v, %v", snap, err)
	}

	loaded, err := repo.Load(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Version != 7 || loaded.State.Items["a"] != 7 || loaded.State.Seen != 7 {
		t.Fatalf("loaded from snapshot: version %d, state %+v", loaded.Version, loaded.State)
	}

	// A repository with another revision ignores the snapshot and replays all.
	other := es.NewRepository(store, reg, newCart, es.RepositoryConfig{Snapshots: store, SnapshotRevision: "2"})
	replayed, err := other.Load(ctx, "c")
	if err != nil || replayed.Version != 7 || replayed.State.Seen != 7 {
		t.Fatalf("revision 2 load: %+v, %v", replayed, err)
	}

	// Proof that the snapshot was used: a snapshot claiming more state than
	// the events hold shows up in the loaded aggregate.
	forged := es.Snapshot{Stream: "c", Version: 7, Revision: "1", Data: []byte(`{"id":"c","items":{"a":100},"seen":100}`)}
	if err := store.SaveSnapshot(ctx, forged); err != nil {
		t.Fatal(err)
	}
	fromSnap, err := repo.Load(ctx, "c")
	if err != nil || fromSnap.State.Items["a"] != 100 || fromSnap.Version != 7 {
		t.Fatalf("load did not start from the snapshot: %+v, %v", fromSnap, err)
	}
}

func TestRepositoryConfigValidate(t *testing.T) {
	t.Parallel()
	err := es.RepositoryConfig{SnapshotEvery: -1}.Validate()
	if err == nil {
		t.Fatal("negative SnapshotEvery accepted")
	}
	err = es.RepositoryConfig{SnapshotEvery: 5}.Validate()
	if err == nil {
		t.Fatal("SnapshotEvery without Snapshots accepted")
	}
	if err := (es.RepositoryConfig{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}
