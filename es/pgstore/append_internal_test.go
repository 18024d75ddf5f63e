package pgstore

import (
	"hash/fnv"
	"math"
	"testing"

	"github.com/stratadev/strata/es"
)

func TestStreamKeyIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "order-42", "ünïcode-stream", string(make([]byte, 1024))} {
		h := fnv.New32a()
		h.Write([]byte(s))
		if got, want := streamKey(s), int32(h.Sum32()); got != want {
			t.Errorf("streamKey(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestExpectedRange(t *testing.T) {
	for _, tc := range []struct {
		e      es.ExpectedVersion
		lo, hi int64
	}{
		{es.Any, 0, math.MaxInt64},
		{es.StreamExists, 1, math.MaxInt64},
		{es.NoStream, 0, 0},
		{es.Exact(0), 0, 0},
		{es.Exact(7), 7, 7},
	} {
		if lo, hi := expectedRange(tc.e); lo != tc.lo || hi != tc.hi {
			t.Errorf("expectedRange(%s) = %d, %d; want %d, %d", tc.e, lo, hi, tc.lo, tc.hi)
		}
	}
}
