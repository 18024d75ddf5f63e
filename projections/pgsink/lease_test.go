package pgsink_test

import (
	"testing"
)

// A released lease can be taken again at once: Release unlocks before it
// closes the connection, whose backend would otherwise give the lock up
// only when it noticed.
func TestLeaseReleaseIsImmediate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 200 {
		lease, got, err := e.sink.TryLock(t.Context(), "p")
		if err != nil || !got {
			t.Fatalf("try %d: TryLock = %v, %v right after a release; want the lease", i, got, err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatalf("try %d: Release: %v", i, err)
		}
		if pid, held, err := e.sink.LeaseHolder(t.Context(), "p"); err != nil || held {
			t.Fatalf("try %d: LeaseHolder = %d, %v, %v right after Release; want nobody", i, pid, held, err)
		}
	}
}
