package estest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// The limits the size tests configure through Config.NewLimited.
const (
	testMaxEventSize  = 4096
	testMaxAppendSize = 10_000
)

func sizeTests() []test {
	return []test{
		{"EventOverLimit", testEventOverLimit},
		{"EventAtLimit", testEventAtLimit},
		{"AppendOverLimit", testAppendOverLimit},
		{"AppendAtLimit", testAppendAtLimit},
	}
}

// limitedStore returns the stores of the size tests.
func limitedStore(cfg Config) func(t *testing.T) es.Store {
	return func(t *testing.T) es.Store {
		if cfg.NewLimited == nil {
			t.Skip("Config.NewLimited is nil: the store's size limits are not tested")
		}
		return cfg.NewLimited(t, es.SizeLimits{MaxEventSize: testMaxEventSize, MaxAppendSize: testMaxAppendSize})
	}
}

// sized returns an event whose es.EventSize is exactly size, with metadata.
func sized(typ string, size int) es.EventData {
	e := es.EventData{ID: uuid.New(), Type: typ, Metadata: es.Metadata{"k": "v"}}
	pad := size - es.EventSize(es.EventData{Type: typ, Data: []byte(`{"p":""}`), Metadata: e.Metadata})
	e.Data = []byte(`{"p":"` + strings.Repeat("x", pad) + `"}`)
	return e
}

// checkTooLarge fails the test unless err is an invalid-input error naming
// stream, index, size and limit.
func checkTooLarge(t *testing.T, err error, stream string, index, size, limit int) {
	t.Helper()
	checkInvalid(t, err, stream, index)
	ie, _ := errors.AsType[*es.InvalidEventError](err)
	if ie.Size != size || ie.Limit != limit {
		t.Errorf("append to %q: InvalidEventError Size %d, Limit %d; want %d, %d (%v)", stream, ie.Size, ie.Limit, size, limit, err)
	}
}

// An event one byte over MaxEventSize is refused, and nothing of its append
// is written, not even the valid event before it.
func testEventOverLimit(t *testing.T, ctx context.Context, s es.Store) {
	_, err := s.Append(ctx, "big", es.Any, sized("Small", 100), sized("Big", testMaxEventSize+1))
	checkTooLarge(t, err, "big", 1, testMaxEventSize+1, testMaxEventSize)
	checkNotFound(t, ctx, s, "big", es.ReadStreamOptions{})
}

// An event of exactly MaxEventSize is stored as it was given.
func testEventAtLimit(t *testing.T, ctx context.Context, s es.Store) {
	e := sized("Big", testMaxEventSize)
	mustAppend(t, ctx, s, "big", es.NoStream, e)
	recs := mustReadStream(t, ctx, s, "big", es.ReadStreamOptions{})
	if len(recs) != 1 || recs[0].ID != e.ID || !jsonEqual(recs[0].Data, e.Data) {
		t.Fatalf("ReadStream after appending an event of exactly MaxEventSize: %d records; want the event", len(recs))
	}
}

// Events under MaxEventSize that together exceed MaxAppendSize are refused
// as a whole, and nothing is written.
func testAppendOverLimit(t *testing.T, ctx context.Context, s es.Store) {
	_, err := s.Append(ctx, "many", es.Any, sized("A", 4000), sized("B", 4000), sized("C", 2001))
	checkTooLarge(t, err, "many", -1, 10_001, testMaxAppendSize)
	checkNotFound(t, ctx, s, "many", es.ReadStreamOptions{})
}

// An append of exactly MaxAppendSize is stored.
func testAppendAtLimit(t *testing.T, ctx context.Context, s es.Store) {
	mustAppend(t, ctx, s, "many", es.NoStream, sized("A", 4000), sized("B", 4000), sized("C", 2000))
	if recs := mustReadStream(t, ctx, s, "many", es.ReadStreamOptions{}); len(recs) != 3 {
		t.Fatalf("ReadStream after appending exactly MaxAppendSize: %d records; want 3", len(recs))
	}
}
