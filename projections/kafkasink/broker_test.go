package kafkasink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// signal is a log handler that closes ch at the first record whose
// message contains want, once armed.
type signal struct {
	want  string
	once  *sync.Once
	ch    chan struct{}
	armed *atomic.Bool
}

func newSignal(want string) signal {
	return signal{want: want, once: new(sync.Once), ch: make(chan struct{}), armed: new(atomic.Bool)}
}

func (h signal) Enabled(context.Context, slog.Level) bool { return true }
func (h signal) Handle(_ context.Context, r slog.Record) error {
	if h.armed.Load() && strings.Contains(r.Message, h.want) {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h signal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signal) WithGroup(string) slog.Handler      { return h }

// The broker dies in the middle of a run and comes back: publishing
// stalls, status says the projection is retrying with the error, and then
// it goes on with nothing lost and nothing twice.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	kafkatest.URL(t) // skips with the others under STRATA_SKIP_KAFKA=1
	port, err := kafkatest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kafkatest.Start(t.Context(), kafkatest.ServerConfig{Port: port})
	if errors.Is(err, kafkatest.ErrNotInstalled) && !pgtest.Required() {
		t.Skip(err) // TEST_KAFKA_URL names a broker, but this test needs one to kill
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := srv.URL()
	e := newEnvOn(t, url, kafkatest.TopicOn(t, kadm.NewClient(kafkatest.ClientOf(t, url)), 3))
	e.cfg.Timeout = 2 * time.Second
	sink := e.newSink(t, e.cfg)

	retrying := newSignal("transient error; retrying")
	e.run(t, sink, projections.Config{BatchSize: 5, Logger: slog.New(retrying)})
	appendSome := func(from, to int) {
		for i := from; i < to; i++ {
			e.place(t, fmt.Sprintf("order-%d", i%5), i)
		}
	}
	appendSome(0, 20)
	e.waitFor(t, e.place(t, "order-x", 1))

	srv.Kill()
	// Armed only now: a start may retry before, while a new topic gets
	// its leader.
	retrying.armed.Store(true)
	appendSome(20, 40)
	select {
	case <-retrying.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not retry within 30s of the broker's death")
	}
	st, err := projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.pg}, e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateRetrying || st.LastError == nil || !strings.Contains(st.LastError.Error, "kafkasink") {
		t.Errorf("status while the broker is down: %s, last error %+v; want retrying with the sink's error", st.State, st.LastError)
	}

	if err := srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendSome(40, 60)
	head := e.place(t, "order-y", 1)
	e.waitFor(t, head)
	checkExactlyOnce(t, e.log(t, head), readAll(t, url, e.proj.topic))
	st, err = projections.ReadStatus(t.Context(), projections.StatusOptions{Store: e.store, Checkpoints: e.pg}, e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != projections.StateRunning || st.LastError != nil {
		t.Errorf("status after the broker came back: %s, last error %+v; want running without one", st.State, st.LastError)
	}
}
