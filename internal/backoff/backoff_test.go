package backoff_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelayDoublesWithinJitterBounds(t *testing.T) {
	t.Parallel()
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for _, tc := range []struct {
		attempt int
		full    time.Duration // the delay before jitter
	}{
		{-1, 100 * time.Millisecond},
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{6, 6400 * time.Millisecond},
		{7, 10 * time.Second}, // 12.8s, capped
		{1000, 10 * time.Second},
	} {
		for range 200 {
			if got := b.Delay(tc.attempt); got < tc.full/2 || got > tc.full {
				t.Fatalf("Delay(%d) = %v; want between %v and %v", tc.attempt, got, tc.full/2, tc.full)
			}
		}
	}
}

func TestDelayIsJittered(t *testing.T) {
	t.Parallel()
	b := backoff.Backoff{Min: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[b.Delay(2)] = true
	}
	// 100 draws from 2 000 000 001 nanosecond values: one value only
	// means there is no jitter.
	if len(seen) < 2 {
		t.Fatalf("Delay(2) gave %d distinct values in 100 calls; want jitter", len(seen))
	}
}

func TestDelayCapsWhenMinExceedsMaxOrOverflows(t *testing.T) {
	t.Parallel()
	for _, b := range []backoff.Backoff{
		{Min: time.Minute, Max: time.Second},
		{Min: time.Duration(1) << 62, Max: time.Second}, // overflows when doubled
	} {
		for attempt := range 3 {
			if got := b.Delay(attempt); got < b.Max/2 || got > b.Max {
				t.Errorf("%+v.Delay(%d) = %v; want between %v and %v", b, attempt, got, b.Max/2, b.Max)
			}
		}
	}
}

func TestDelayZero(t *testing.T) {
	t.Parallel()
	for _, b := range []backoff.Backoff{{}, {Min: -time.Second, Max: -time.Second}} {
		if got := b.Delay(3); got != 0 {
			t.Errorf("%+v.Delay(3) = %v; want 0", b, got)
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if backoff.Sleep(ctx, time.Hour) {
		t.Error("Sleep(canceled ctx, 1h) = true; want false")
	}
	// Zero wait and ended ctx: both are ready, and the context wins.
	if backoff.Sleep(ctx, 0) {
		t.Error("Sleep(canceled ctx, 0) = true; want false")
	}
	if (backoff.Backoff{Min: time.Hour, Max: time.Hour}).Wait(ctx, 0) {
		t.Error("Wait(canceled ctx) = true; want false")
	}
}

func TestSleepCanceledWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan bool)
	go func() { done <- backoff.Sleep(ctx, time.Hour) }()
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Error("Sleep = true after cancel; want false")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep(ctx, 1h) did not return within 10s of cancel")
	}
}

func TestSleepWaits(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if !backoff.Sleep(t.Context(), 20*time.Millisecond) {
		t.Fatal("Sleep(live ctx, 20ms) = false; want true")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("Sleep(20ms) returned after %v; want at least 20ms", el)
	}
	if !backoff.Sleep(t.Context(), 0) {
		t.Error("Sleep(live ctx, 0) = false; want true")
	}
}
