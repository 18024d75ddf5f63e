package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
)

type itemAdded struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type itemRemoved struct {
	SKU string `json:"sku"`
}

func newRegistry() *es.Registry {
	reg := es.NewRegistry()
	es.Register[itemAdded](reg, "ItemAdded")
	es.Register[itemRemoved](reg, "ItemRemoved")
	return reg
}

// stock counts items per SKU, and how often each event was applied in a
// committed batch.
type stock struct {
	name string
	// fail, when set, fails the handler for events it returns true for.
	fail func(projections.Event) bool
}

func (p stock) Name() string      { return p.name }
func (p stock) Handles() []string { return []string{"ItemAdded", "ItemRemoved"} }

func (p stock) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		if p.fail != nil && p.fail(ev) {
			return fmt.Errorf("refusing %s", ev.Record.ID)
		}
		n, _ := tx.Get("applied", ev.Record.ID.String())
		c, _ := n.(int)
		tx.Put("applied", ev.Record.ID.String(), c+1)
		switch e := ev.Data.(type) {
		case itemAdded:
			q, _ := tx.Get("stock", e.SKU)
			qty, _ := q.(int)
			tx.Put("stock", e.SKU, qty+e.Qty)
		case itemRemoved:
			tx.Delete("stock", e.SKU)
		default:
			return fmt.Errorf("unexpected %T", ev.Data)
		}
	}
	return nil
}

var quiet = slog.New(slog.DiscardHandler)

func appendAdded(t *testing.T, store es.Store, stream string, n int) es.AppendResult {
	t.Helper()
	var res es.AppendResult
	for i := range n {
		var err error
		res, err = store.Append(t.Context(), stream, es.Any, es.EventData{
			Type: "ItemAdded", Data: fmt.Appendf(nil, `{"sku":"sku-%d","qty":1}`, i%10),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// start runs w until the test ends, and returns a channel with Run's
// result.
func start[Tx any](t *testing.T, ctx context.Context, w *projections.Worker[Tx]) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func waitFor(t *testing.T, cps projections.Checkpoints, name string, pos es.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, cps, name, pos); err != nil {
		t.Fatal(err)
	}
}

func checkAppliedOnce(t *testing.T, sink *memsink.Sink, store es.Store, skip map[string]bool) {
	t.Helper()
	recs, err := store.ReadAll(t.Context(), es.Start, 100000)
	if err != nil {
		t.Fatal(err)
	}
	applied := sink.Rows("applied")
	want := 0
	for _, r := range recs {
		if r.Type != "ItemAdded" && r.Type != "ItemRemoved" || skip[r.ID.String()] {
			continue
		}
		want++
		if n := applied[r.ID.String()]; n != 1 {
			t.Errorf("event %s@%d applied %v times, want 1", r.Stream, r.Version, n)
		}
	}
	if len(applied) != want {
		t.Errorf("%d events applied, want %d", len(applied), want)
	}
}

func TestWorkerCatchUpAndLive(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", 1200)
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(store, newRegistry(), sink, stock{name: "stock"}, projections.Config{Logger: quiet, BatchSize: 100})
	done := start(t, ctx, w)
	res := appendAdded(t, store, "b", 50)
	waitFor(t, sink, "stock", res.Position)
	if got := sink.Rows("stock")["sku-3"]; got != 125 {
		t.Errorf("stock of sku-3 = %v, want 125", got)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	checkAppliedOnce(t, sink, store, nil)
	if w.Applied() != 1250 {
		t.Errorf("Applied() = %d, want 1250", w.Applied())
	}

	// A new worker continues from the checkpoint.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	w2 := projections.NewWorker(store, newRegistry(), sink, stock{name: "stock"}, projections.Config{Logger: quiet})
	done2 := start(t, ctx2, w2)
	res = appendAdded(t, store, "c", 10)
	waitFor(t, sink, "stock", res.Position)
	cancel2()
	if err := waitDone(t, done2); err != nil {
		t.Fatal(err)
	}
	if w2.Applied() != 10 {
		t.Errorf("second worker applied %d events, want 10", w2.Applied())
	}
	checkAppliedOnce(t, sink, store, nil)
}

func TestWorkerSkipsUndeclaredTypes(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	appendAdded(t, store, "a", 3)
	// Neither declared nor registered: skipped without decoding.
	res, err := store.Append(t.Context(), "a", es.Any, es.EventData{Type: "NoteTaken", Data: []byte(`"not an object"`)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet}))
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	cp, _ := sink.Checkpoint(t.Context(), "s")
	if cp.Position != res.Position || cp.State != projections.StateRunning || cp.Failure != nil {
		t.Errorf("checkpoint %+v; want running at %s with no failure", cp, res.Position)
	}
	checkAppliedOnce(t, sink, store, nil)
}

func TestWorkerStopPolicy(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	good := appendAdded(t, store, "a", 5)
	bad, err := store.Append(t.Context(), "a", es.Any, es.EventData{Type: "ItemAdded", Data: []byte(`{"sku":"x","qty":"many"}`)})
	if err != nil {
		t.Fatal(err)
	}
	appendAdded(t, store, "a", 5)
	w := projections.NewWorker(store, newRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet})
	err = waitDone(t, start(t, t.Context(), w))
	var stalled *projections.StalledError
	if !errors.As(err, &stalled) || !errors.Is(err, projections.ErrStalled) {
		t.Fatalf("Run = %v, want a StalledError", err)
	}
	f := stalled.Failure
	if f.Stream != "a" || f.Version != 6 || f.Position != bad.Position || f.Type != "ItemAdded" || !strings.Contains(f.Error, "decode") {
		t.Errorf("failure %+v; want a@6 ItemAdded at %s with a decode error", f, bad.Position)
	}
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: store, Checkpoints: sink}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateStalled || st.Checkpoint != good.Position || st.LastError == nil ||
		st.LastError.Position != bad.Position || st.LagEvents != 6 || st.Lag <= 0 {
		t.Errorf("status %+v; want stalled at %s, 6 behind, last error at %s", st, good.Position, bad.Position)
	}
	// A stalled projection stays stalled: a new worker stops at once.
	err = waitDone(t, start(t, t.Context(), projections.NewWorker(store, newRegistry(), sink, stock{name: "s"}, projections.Config{Logger: quiet})))
	if !errors.Is(err, projections.ErrStalled) {
		t.Fatalf("Run on a stalled projection = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := projections.WaitFor(ctx, sink, "s", bad.Position); !errors.Is(err, projections.ErrStalled) {
		t.Errorf("WaitFor on a stalled projection = %v", err)
	}
	if n := len(sink.Rows("applied")); n != 5 {
		t.Errorf("%d events applied, want the 5 before the stall", n)
	}
}

func TestWorkerHandlerErrorFindsTheEvent(t *testing.T) {
	t.Parallel()
	for _, policy := range []projections.ErrorPolicy{projections.PolicyStop, projections.PolicyDeadLetter} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			t.Parallel()
			store, sink := memstore.New(), memsink.New()
			appendAdded(t, store, "a", 7)
			bad, err := store.Append(t.Context(), "poison", es.Any, es.EventData{Type: "ItemRemoved", Data: []byte(`{"sku":"sku-1"}`)})
			if err != nil {
				t.Fatal(err)
			}
			last := appendAdded(t, store, "b", 7)
			p := stock{name: "s", fail: func(ev projections.Event) bool { return ev.Record.Stream == "poison" }}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := start(t, ctx, projections.NewWorker(store, newRegistry(), sink, p, projections.Config{Logger: quiet, ErrorPolicy: policy}))
			if policy == projections.PolicyStop {
				var stalled *projections.StalledError
				if err := waitDone(t, done); !errors.As(err, &stalled) || stalled.Failure.Stream != "poison" ||
					stalled.Failure.Position != bad.Position || !strings.Contains(stalled.Failure.Error, "refusing") {
					t.Fatalf("Run = %v; want stalled at poison@1", err)
				}
				cp, _ := sink.Checkpoint(t.Context(), "s")
				if cp.Position.Compare(bad.Position) >= 0 {
					t.Errorf("checkpoint %s is not before the failing event %s", cp.Position, bad.Position)
				}
				if n := len(sink.Rows("applied")); n != 7 {
					t.Errorf("%d events applied before the failing one, want 7", n)
				}
				return
			}
			waitFor(t, sink, "s", last.Position)
			cancel()
			if err := waitDone(t, done); err != nil {
				t.Fatal(err)
			}
			dead := sink.DeadLetters()
			if len(dead) != 1 || dead[0].Record.Stream != "poison" || dead[0].Failure.Position != bad.Position || dead[0].Failure.Version != 1 {
				t.Errorf("dead letters %+v; want poison@1", dead)
			}
			checkAppliedOnce(t, sink, store, map[string]bool{dead[0].Record.ID.String(): true})
		})
	}
}

func TestWorkerLease(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	reg := newRegistry()
	cfg := projections.Config{Logger: quiet, BatchSize: 7, PollInterval: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ws := []*projections.Worker[*memsink.Tx]{
		projections.NewWorker(store, reg, sink, stock{name: "s"}, cfg),
		projections.NewWorker(store, reg, sink, stock{name: "s"}, cfg),
	}
	var dones []<-chan error
	for _, w := range ws {
		dones = append(dones, start(t, ctx, w))
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { appendAdded(t, store, fmt.Sprint("w", i), 100) })
	}
	wg.Wait()
	head, _ := store.Head(t.Context())
	waitFor(t, sink, "s", head)
	if a, b := ws[0].Applied(), ws[1].Applied(); a != 0 && b != 0 || a+b != 400 {
		t.Errorf("workers applied %d and %d events; want one of them all 400", a, b)
	}
	// Take the lease away: the other worker takes over from the checkpoint.
	if err := sink.Revoke("s"); err != nil {
		t.Fatal(err)
	}
	res := appendAdded(t, store, "after", 30)
	waitFor(t, sink, "s", res.Position)
	cancel()
	for _, d := range dones {
		if err := waitDone(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if ws[0].Applied()+ws[1].Applied() != 430 {
		t.Errorf("workers applied %d and %d events; want 430 in all", ws[0].Applied(), ws[1].Applied())
	}
	checkAppliedOnce(t, sink, store, nil)
}

func TestWaitForTimesOut(t *testing.T) {
	t.Parallel()
	sink := memsink.New()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := projections.WaitFor(ctx, sink, "nobody", es.Position{Commit: 1, Prepare: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v, want DeadlineExceeded", err)
	}
	if err := projections.WaitFor(t.Context(), sink, "nobody", es.Start); err != nil {
		t.Fatalf("WaitFor(Start) = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := projections.Config{BatchSize: -1, RetryMin: time.Second, RetryMax: time.Millisecond, ErrorPolicy: 9}.Validate()
	if err == nil || !strings.Contains(err.Error(), "BatchSize") || !strings.Contains(err.Error(), "RetryMin") || !strings.Contains(err.Error(), "ErrorPolicy") {
		t.Fatalf("Validate = %v; want all three problems", err)
	}
	if err := (projections.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// remoteTimeout is a handler error that says it is transient.
type remoteTimeout struct{}

func (remoteTimeout) Error() string   { return "pricing service: no answer within 2s" }
func (remoteTimeout) Transient() bool { return true }

// A handler error that says it is transient is retried, not followed by the
// error policy; the batch applies once it succeeds.
func TestWorkerRetriesTransientHandlerErrors(t *testing.T) {
	t.Parallel()
	store, sink := memstore.New(), memsink.New()
	res := appendAdded(t, store, "a", 3)
	var mu sync.Mutex
	failures := 0
	p := stock{name: "s", fail: func(projections.Event) bool {
		mu.Lock()
		defer mu.Unlock()
		if failures < 4 {
			failures++
			return true
		}
		return false
	}}
	transient := transientStock{p}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](transient),
		projections.Config{Logger: quiet, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	done := start(t, ctx, w)
	waitFor(t, sink, "s", res.Position)
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatalf("Run = %v, want nil: a transient handler error is retried", err)
	}
	if failures != 4 {
		t.Errorf("the handler failed %d times, want 4", failures)
	}
	checkAppliedOnce(t, sink, store, nil)
	if !projections.IsTransient(fmt.Errorf("wrapped: %w", remoteTimeout{})) || projections.IsTransient(errors.New("plain")) {
		t.Error("IsTransient does not look through wrapping, or calls a plain error transient")
	}
}

// transientStock is stock whose handler errors say they are transient.
type transientStock struct{ stock }

func (p transientStock) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	if err := p.stock.HandleBatch(ctx, tx, events); err != nil {
		return fmt.Errorf("%w: %v", remoteTimeout{}, err)
	}
	return nil
}

func TestErrorPolicyText(t *testing.T) {
	t.Parallel()
	for _, p := range []projections.ErrorPolicy{projections.PolicyStop, projections.PolicyDeadLetter} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText(%d): %v", p, err)
		}
		var back projections.ErrorPolicy
		if err := back.UnmarshalText(b); err != nil || back != p {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back, err, p)
		}
	}
	var p projections.ErrorPolicy
	if err := p.UnmarshalText([]byte("skip")); err == nil || !strings.Contains(err.Error(), `"skip"`) {
		t.Errorf("UnmarshalText(skip) = %v; want an error naming it", err)
	}
	if _, err := projections.ErrorPolicy(9).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown policy succeeded")
	}
	if got := projections.PolicyDeadLetter.String(); got != "dead-letter" {
		t.Errorf("String() = %q, want dead-letter", got)
	}
}

// advising is a sink that advises a batch size.
type advising struct {
	*memsink.Sink
	size int
}

func (a advising) BatchSize() int { return a.size }

// batchSizes is stock that records the size of each batch it handles.
type batchSizes struct {
	stock
	mu    sync.Mutex
	sizes []int
}

func (p *batchSizes) HandleBatch(ctx context.Context, tx *memsink.Tx, events []projections.Event) error {
	p.mu.Lock()
	p.sizes = append(p.sizes, len(events))
	p.mu.Unlock()
	return p.stock.HandleBatch(ctx, tx, events)
}

func TestWorkerTakesTheSinksBatchSize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		advice int // 0: the sink is no BatchSizer
		batch  int // Config.BatchSize
		want   []int
	}{
		{name: "advised", advice: 7, want: []int{7, 7, 6}},
		{name: "set by the user", advice: 7, batch: 5, want: []int{5, 5, 5, 5}},
		{name: "no advice", advice: -1, want: []int{20}},
		{name: "no BatchSizer", want: []int{20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store, mem := memstore.New(), memsink.New()
			res := appendAdded(t, store, "a", 20)
			var sink projections.Sink[*memsink.Tx] = mem
			if c.advice != 0 {
				sink = advising{mem, c.advice}
			}
			p := &batchSizes{stock: stock{name: "s"}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w := projections.NewWorker(store, newRegistry(), sink, projections.Projection[*memsink.Tx](p),
				projections.Config{Logger: quiet, BatchSize: c.batch})
			done := start(t, ctx, w)
			waitFor(t, mem, "s", res.Position)
			cancel()
			if err := waitDone(t, done); err != nil {
				t.Fatal(err)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if !slices.Equal(p.sizes, c.want) {
				t.Errorf("batch sizes = %v, want %v", p.sizes, c.want)
			}
			checkAppliedOnce(t, mem, store, nil)
		})
	}
}
