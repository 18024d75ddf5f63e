package pgsink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// busy is a transient error, as a handler's call to another service might
// return.
type busy struct{}

func (busy) Error() string   { return "the rates service is busy" }
func (busy) Transient() bool { return true }

// A PostgreSQL projection retrying a transient error shows as retrying in
// status, with the error, until it gets through.
func TestRetryingShowsInStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	failed := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	p := stock{name: "stock", before: func(context.Context, *pgsink.Tx, []projections.Event) error {
		select {
		case <-release:
			return nil
		default:
			once.Do(func() { close(failed) })
			return busy{}
		}
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := start(ctx, pgsink.NewWorker(e.store, e.reg, e.sink, p, projections.Config{Logger: quiet,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}))
	res := e.appendOne(t, "s1", "ItemAdded", `{"sku":"sku-1","qty":3}`)
	<-failed

	opts := projections.StatusOptions{Store: e.store, Checkpoints: e.sink}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := projections.ReadStatus(t.Context(), opts, "stock")
		if err != nil {
			t.Fatal(err)
		}
		if st.State == projections.StateRetrying {
			if st.LastError == nil || !st.LastError.Retrying || st.LastError.Error != (busy{}).Error() {
				t.Fatalf("LastError while retrying = %+v, want the handler's error, retrying", st.LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status while the handler fails = %s, last error %+v; want retrying", st.State, st.LastError)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}

	close(release)
	e.waitFor(t, "stock", res.Position)
	st, err := projections.ReadStatus(t.Context(), opts, "stock")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateRunning || st.LastError != nil {
		t.Errorf("status after the retry got through = %s, last error %+v; want running, none", st.State, st.LastError)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}
