// Package backoff waits between retries: exponential [Backoff] with jitter,
// and [Sleep], a sleep that ends early when its context does. Every retry
// loop in strata waits through it, so that they all back off the same way.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// maxShift caps the doubling, so that Min<<attempt cannot overflow for any
// Min a caller would configure.
const maxShift = 20

// Backoff is exponential backoff with jitter: the wait before retry number
// attempt (counted from 0) is Min doubled attempt times, at most Max, of
// which the upper half is random. The jitter keeps workers that failed
// together from retrying together.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry number attempt: d = Min<<attempt,
// capped at Max, then a random duration between d/2 and d. A negative
// attempt counts as 0; a Min or Max of 0 or less gives 0.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min << min(max(attempt, 0), maxShift)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps for Delay(attempt) and reports whether it did; it reports
// false when ctx ended first.
func (b Backoff) Wait(ctx context.Context, attempt int) bool {
	return Sleep(ctx, b.Delay(attempt))
}

// Sleep waits for d and reports true, or reports false as soon as ctx ends,
// at once when it has ended already.
func Sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
