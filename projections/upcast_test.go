package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

type noteTaken struct {
	Text string `json:"text"`
}

// upcastRegistry upcasts ItemAdded.v1 ({"sku","count"}) into ItemAdded,
// and NoteTaken.v1 into NoteTaken, a type stock does not handle.
func upcastRegistry() *es.Registry {
	reg := newRegistry()
	es.Register[noteTaken](reg, "NoteTaken")
	reg.Upcast("ItemAdded.v1", func(data json.RawMessage) (string, json.RawMessage, error) {
		var v1 struct {
			SKU   string `json:"sku"`
			Count int    `json:"count"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return "", nil, err
		}
		if v1.Count < 0 {
			return "", nil, fmt.Errorf("negative count %d", v1.Count)
		}
		out, err := json.Marshal(itemAdded{SKU: v1.SKU, Qty: v1.Count})
		return "ItemAdded", out, err
	})
	reg.Upcast("NoteTaken.v1", func(data json.RawMessage) (string, json.RawMessage, error) {
		return "NoteTaken", json.RawMessage(`{"text":"upcast"}`), nil
	})
	return reg
}

// appendRaw appends one event to stream "a" and returns its ID and result.
func appendRaw(t *testing.T, store es.Store, typ, data string) (uuid.UUID, es.AppendResult) {
	t.Helper()
	id := uuid.New()
	res, err := store.Append(t.Context(), "a", es.Any, es.EventData{ID: id, Type: typ, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return id, res
}

// TestWorkerReceivesUpcastEvents: stock declares only ItemAdded, yet gets
// the ItemAdded.v1 events the registry upcasts into it; NoteTaken.v1, upcast
// into a type stock does not handle, and NoteTaken itself stay filtered out
// (stock's handler fails on any other type).
func TestWorkerReceivesUpcastEvents(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	old, _ := appendRaw(t, store, "ItemAdded.v1", `{"sku":"tea","count":3}`)
	appendRaw(t, store, "NoteTaken.v1", `{"note":"old shape"}`)
	appendRaw(t, store, "NoteTaken", `{"text":"x"}`)
	appendRaw(t, store, "ItemAdded", `{"sku":"tea","qty":2}`)
	_, res := appendRaw(t, store, "NoteTaken.v1", `{}`)

	ctx, cancel := context.WithCancel(t.Context())
	done := start(t, ctx, projections.NewWorker(store, upcastRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet}))
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got, want := sink.Rows("stock")["tea"], 5; got != want {
		t.Errorf("stock of tea = %v, want %d (3 from the upcast ItemAdded.v1, 2 from ItemAdded)", got, want)
	}
	applied := sink.Rows("applied")
	if len(applied) != 2 {
		t.Errorf("%d events applied, want 2 (ItemAdded.v1 and ItemAdded): %v", len(applied), applied)
	}
	if n := applied[old.String()]; n != 1 {
		t.Errorf("the ItemAdded.v1 event was applied %v times, want 1", n)
	}
}

// TestWorkerStallsOnAFailingUpcaster: an old event whose upcaster fails
// cannot be told apart, so it follows the error policy instead of being
// skipped.
func TestWorkerStallsOnAFailingUpcaster(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendRaw(t, store, "ItemAdded", `{"sku":"tea","qty":2}`)
	_, bad := appendRaw(t, store, "ItemAdded.v1", `{"sku":"tea","count":-1}`)
	err := waitDone(t, start(t, t.Context(), projections.NewWorker(store, upcastRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet})))
	var stalled *projections.StalledError
	if !errors.As(err, &stalled) {
		t.Fatalf("Run = %v, want a StalledError", err)
	}
	if f := stalled.Failure; f.Position != bad.Position || f.Type != "ItemAdded.v1" {
		t.Errorf("failure at %s of type %q; want at %s of type ItemAdded.v1", f.Position, f.Type, bad.Position)
	}
}

// TestWorkerUpcastsOnce: the worker decodes an old event from the record
// its upcasters made, without running them a second time.
func TestWorkerUpcastsOnce(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	reg := newRegistry()
	var calls atomic.Int64
	reg.Upcast("ItemAdded.v1", func(data json.RawMessage) (string, json.RawMessage, error) {
		calls.Add(1)
		return "ItemAdded", data, nil
	})
	var last es.AppendResult
	for range 5 {
		_, last = appendRaw(t, store, "ItemAdded.v1", `{"sku":"tea","qty":1}`)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := start(t, ctx, projections.NewWorker(store, reg, sink, stock{name: "s"}, projections.Config{Logger: quiet}))
	waitFor(t, sink, "s", last.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := sink.Rows("stock")["tea"]; got != 5 {
		t.Errorf("stock of tea = %v, want 5", got)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("the upcaster ran %d times for 5 events, want 5", n)
	}
}
