package esdbstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/esdbstore"
	"github.com/stratadev/strata/es/esdbstore/internal/esdbtest"
)

func TestOpenFailsFast(t *testing.T) {
	t.Parallel()
	// A port nothing listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = esdbstore.Open(ctx, esdbstore.Config{ConnectionString: "kurrentdb://" + addr + "?tls=false", Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "connect to "+addr) {
		t.Fatalf("Open on a closed port: %v; want an error naming %s", err, addr)
	}
	if ctx.Err() != nil {
		t.Fatal("Open did not fail before the deadline")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := esdbstore.Config{ConnectionString: "http://x", Namespace: "$x", ReconnectMin: -1}.Validate()
	for _, want := range []string{"scheme", "Namespace", "ReconnectMin"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want a problem with %s", err, want)
		}
	}
	for _, s := range []string{"esdb://h:2113", "esdb+discover://h:2113", "kurrentdb://h:2113?tls=false", "kdb+discover://h"} {
		if err := (esdbstore.Config{ConnectionString: s}).Validate(); err != nil {
			t.Errorf("Validate(%s): %v", s, err)
		}
	}
}

// TestConfigValidateOrder checks that Validate reports its problems in the
// order of the fields every time, so that its message can be compared.
func TestConfigValidateOrder(t *testing.T) {
	t.Parallel()
	c := esdbstore.Config{ConnectionString: "esdb://h:2113", ReconnectMin: -1, ReconnectMax: -2, ReconnectTimeout: -3}
	want := strings.Join([]string{
		"esdbstore: Config.ReconnectMin is -1ns; want 0 (default) or more",
		"esdbstore: Config.ReconnectMax is -2ns; want 0 (default) or more",
		"esdbstore: Config.ReconnectTimeout is -3ns; want 0 (default) or more",
	}, "\n")
	for i := range 50 {
		if got := c.Validate(); got == nil || got.Error() != want {
			t.Fatalf("Validate (call %d) = %v; want %q", i, got, want)
		}
	}
}

func TestStreamDeletedAndSystemNames(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestServerStore(t)
	if _, err := s.Append(ctx, "gone", es.NoStream, es.EventData{Type: "Created", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().TombstoneStream(ctx, "gone", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "gone", es.Any, es.EventData{Type: "Again", Data: []byte(`{}`)}); !errors.Is(err, es.ErrStreamDeleted) {
		t.Errorf("append to a tombstoned stream: %v; want es.ErrStreamDeleted", err)
	}
	if _, err := s.ReadStream(ctx, "gone", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamDeleted) {
		t.Errorf("read of a tombstoned stream: %v; want es.ErrStreamDeleted", err)
	}
	// The tombstone is a system event: the log holds the first event only.
	if recs, err := s.ReadAll(ctx, es.Start, 0); err != nil || len(recs) != 1 {
		t.Errorf("ReadAll after a tombstone: %d events, %v; want 1", len(recs), err)
	}
	if _, err := s.Append(ctx, "$system", es.Any, es.EventData{Type: "X", Data: []byte(`{}`)}); !errors.Is(err, es.ErrInvalidEvent) {
		t.Errorf("append to a $ stream: %v; want es.ErrInvalidEvent", err)
	}
	if _, err := s.Append(ctx, "user", es.Any, es.EventData{Type: "$X", Data: []byte(`{}`)}); !errors.Is(err, es.ErrInvalidEvent) {
		t.Errorf("append of a $ type: %v; want es.ErrInvalidEvent", err)
	}
}

// TestSubscribeSurvivesOutage stops the server for a while in the middle of
// a subscription: it re-subscribes with backoff once the server is back,
// and delivers every event once.
func TestSubscribeSurvivesOutage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv := esdbtest.Start(t)
	s := open(t, esdbstore.Config{ConnectionString: srv.URL(), Logger: quiet, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	var want []uuid.UUID
	add := func() {
		t.Helper()
		id := uuid.New()
		if _, err := s.Append(ctx, "outage", es.Any, es.EventData{ID: id, Type: "Tick", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	for range 5 {
		add()
	}
	got := make(chan es.Record, 100)
	subCtx, stopSub := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() {
		defer close(got)
		for batch, err := range s.Subscribe(subCtx, es.SubscribeOptions{BatchSize: 2}) {
			if err != nil {
				ended <- err
				return
			}
			for _, r := range batch {
				got <- r
			}
		}
		ended <- nil
	}()
	var seen []uuid.UUID
	receive := func(n int) {
		t.Helper()
		for len(seen) < n {
			select {
			case r := <-got:
				seen = append(seen, r.ID)
			case <-ctx.Done():
				t.Fatalf("got %d events, want %d", len(seen), n)
			}
		}
	}
	receive(5)

	resubscribed := srv.Subscribed()
	srv.Stop()
	// The subscription is down; the store keeps trying. Start the server
	// again and wait until it is back.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-resubscribed:
	case <-ctx.Done():
		t.Fatal("the subscription did not come back")
	}
	for range 5 {
		add()
	}
	receive(10)
	stopSub()
	for range got {
		t.Error("an event arrived after the last one appended")
	}
	if err := <-ended; err != nil {
		t.Fatalf("Subscribe yielded %v", err)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("event %d is %v, want %v: the subscription skipped or repeated events", i, seen[i], want[i])
		}
	}
}
