package consistency_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/consistency"
	"github.com/stratadev/strata/projections/memsink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type noted struct {
	Text string `json:"text"`
}

// notes counts notes; it is what the read models of the tests are.
type notes struct{ name string }

func (p notes) Name() string      { return p.name }
func (p notes) Handles() []string { return []string{"Noted"} }
func (p notes) HandleBatch(_ context.Context, tx *memsink.Tx, events []projections.Event) error {
	n, _ := tx.Get("notes", p.name)
	c, _ := n.(int)
	tx.Put("notes", p.name, c+len(events))
	return nil
}

// env has a log with one event, which the projection "fast" has applied
// and "slow", which has no worker, has not.
type env struct {
	sink   *memsink.Sink
	pos    es.Position
	waiter *consistency.Waiter
}

func newEnv(t *testing.T) env {
	t.Helper()
	store, sink := memstore.New(), memsink.New()
	reg := es.NewRegistry()
	es.Register[noted](reg, "Noted")
	res, err := store.Append(t.Context(), "n", es.Any, es.EventData{Type: "Noted", Data: []byte(`{"text":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w := projections.NewWorker(store, reg, sink, notes{name: "fast"}, projections.Config{})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := projections.WaitFor(wctx, sink, "fast", res.Position); err != nil {
		t.Fatal(err)
	}
	return env{sink: sink, pos: res.Position, waiter: consistency.New(sink, consistency.Config{Wait: 100 * time.Millisecond})}
}

// read is a read handler of "names" that answers 400 for a bad token.
func (e env) read(t *testing.T, target string, header string, names ...string) (*httptest.ResponseRecorder, consistency.Result, error) {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	if header != "" {
		r.Header.Set(consistency.Header, header)
	}
	w := httptest.NewRecorder()
	res, err := e.waiter.Wait(w, r, names...)
	if errors.Is(err, consistency.ErrInvalidToken) {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	return w, res, err
}

func TestWaitReachedAndStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := consistency.Format(e.pos)
	cases := []struct {
		name, target, header string
		names                []string
		want                 consistency.Result
		wantStale            string
	}{
		{"no token", "/r", "", []string{"slow"}, consistency.Result{}, "false"},
		{"header reached", "/r", tok, []string{"fast"}, consistency.Result{Position: e.pos}, "false"},
		{"query reached", "/r?after=" + tok, "", []string{"fast"}, consistency.Result{Position: e.pos}, "false"},
		{"header and query agree", "/r?after=" + tok, tok, []string{"fast"}, consistency.Result{Position: e.pos}, "false"},
		{"behind", "/r", tok, []string{"slow"}, consistency.Result{Position: e.pos, Stale: true, Behind: "slow"}, "true"},
		{"one of several behind", "/r", tok, []string{"fast", "slow"}, consistency.Result{Position: e.pos, Stale: true, Behind: "slow"}, "true"},
	}
	for _, c := range cases {
		w, res, err := e.read(t, c.target, c.header, c.names...)
		if err != nil {
			t.Errorf("%s: Wait = %v, want nil", c.name, err)
			continue
		}
		if got := w.Header().Get(consistency.StaleHeader); got != c.wantStale {
			t.Errorf("%s: X-Stale = %q, want %q", c.name, got, c.wantStale)
		}
		reason := res.Reason
		res.Reason = nil
		if res != c.want {
			t.Errorf("%s: Result = %+v, want %+v", c.name, res, c.want)
		}
		if c.want.Stale && !errors.Is(reason, projections.ErrBehind) {
			t.Errorf("%s: Reason = %v, want a BehindError", c.name, reason)
		}
	}
}

func TestWaitStalled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sink.SetState(t.Context(), "broken", projections.StateStalled, &projections.Failure{Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	// A bound no test run reaches: Wait must not wait for it.
	e.waiter = consistency.New(e.sink, consistency.Config{Wait: time.Hour})
	w, res, err := e.read(t, "/r", consistency.Format(e.pos), "fast", "broken")
	if err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if !res.Stale || res.Behind != "broken" || !errors.Is(res.Reason, projections.ErrStalled) || w.Header().Get(consistency.StaleHeader) != "true" {
		t.Errorf("Result %+v, X-Stale %q; want stale, behind broken, a StalledError", res, w.Header().Get(consistency.StaleHeader))
	}
}

func TestWaitRefusesBadTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := consistency.Format(es.Position{Commit: e.pos.Commit + 1, Prepare: e.pos.Prepare + 1})
	cases := []struct{ name, target, header string }{
		{"not a position", "/r", "yesterday"},
		{"query not a position", "/r?after=12", ""},
		{"header and query disagree", "/r?after=" + other, consistency.Format(e.pos)},
	}
	for _, c := range cases {
		w, _, err := e.read(t, c.target, c.header, "fast")
		var te *consistency.TokenError
		if !errors.As(err, &te) {
			t.Errorf("%s: Wait = %v, want a TokenError", c.name, err)
			continue
		}
		if w.Code != http.StatusBadRequest || w.Header().Get(consistency.StaleHeader) != "" {
			t.Errorf("%s: %d, X-Stale %q; want 400 and no X-Stale", c.name, w.Code, w.Header().Get(consistency.StaleHeader))
		}
	}
}

func TestWaitClientGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/r", nil)
	r.Header.Set(consistency.Header, consistency.Format(e.pos))
	w := httptest.NewRecorder()
	if _, err := e.waiter.Wait(w, r, "slow"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait after the client went away = %v, want context.Canceled", err)
	}
}

func TestSetToken(t *testing.T) {
	t.Parallel()
	pos := es.Position{Commit: 12, Prepare: 34}
	h := http.Header{}
	if tok := consistency.SetToken(h, pos); tok != "12:34" || h.Get(consistency.Header) != "12:34" {
		t.Errorf("SetToken = %q, header %q; want 12:34 in both", tok, h.Get(consistency.Header))
	}
	r := httptest.NewRequest("GET", "/r", nil)
	r.Header.Set(consistency.Header, consistency.Format(pos))
	if got, err := consistency.Token(r); got != pos || err != nil {
		t.Errorf("Token = %s, %v; want %s, nil", got, err, pos)
	}
}
