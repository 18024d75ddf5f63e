package pgstore_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/internal/pgtest"
)

func ev(typ, data string) es.EventData {
	return es.EventData{ID: uuid.New(), Type: typ, Data: []byte(data)}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (pgstore.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	err := pgstore.Config{Schema: strings.Repeat("s", 64), PollInterval: -time.Second, MaxEventSize: -1, MaxAppendSize: -1, GroupCommitMax: -1}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a 64-byte schema, a negative poll interval, negative size limits and a negative group size")
	}
	for _, field := range []string{"Config.Schema", "Config.PollInterval", "Config.MaxEventSize", "Config.MaxAppendSize", "Config.GroupCommitMax"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error does not name %s: %v", field, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New with an invalid Config did not panic")
		}
	}()
	pool, _ := pgtest.NewSchema(t)
	pgstore.New(pool, pgstore.Config{PollInterval: -1})
}

func TestEmptySearchPath(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	var sp string
	if err := pool.QueryRow(t.Context(), "SHOW search_path").Scan(&sp); err != nil {
		t.Fatal(err)
	}
	if sp != `""` && sp != "" {
		t.Fatalf("test pool search_path is %s; want it empty so that unqualified SQL fails", sp)
	}
	// Every operation works on it (the conformance suite covers the rest).
	ctx := t.Context()
	if _, err := s.Append(ctx, "sp", es.NoStream, ev("T", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "sp", es.ReadStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAll(ctx, es.Start, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.HeldBack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, es.Snapshot{Stream: "sp", Version: 1, Revision: "r", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSnapshot(ctx, "sp"); err != nil {
		t.Fatal(err)
	}
}

// Concurrent writers to one stream: exactly one wins each version, the
// others get a version conflict, never a raw database error.
func TestConcurrentWritersOneStream(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	const writers = 8
	for version := range int64(5) {
		start := make(chan struct{})
		errs := make(chan error, writers)
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				<-start
				_, err := s.Append(t.Context(), "contended", es.Exact(version), ev("T", `{}`))
				errs <- err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		wins := 0
		for err := range errs {
			if err == nil {
				wins++
				continue
			}
			vc, ok := errors.AsType[*es.VersionConflictError](err)
			if !ok || vc.Actual != version+1 {
				t.Fatalf("expected %d: %v; want a version conflict at %d", version, err, version+1)
			}
		}
		if wins != 1 {
			t.Fatalf("expected %d: %d appends won; want 1", version, wins)
		}
	}
}

// The same append sent concurrently (a client retrying while the first try
// is in flight) succeeds once and is an idempotent success for the others.
func TestConcurrentIdempotentRetries(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	for _, expected := range []es.ExpectedVersion{es.NoStream, es.Any} {
		stream := "retried-" + expected.String()
		evs := []es.EventData{ev("A", `1`), ev("B", `2`)}
		start := make(chan struct{})
		results := make(chan es.AppendResult, 8)
		errs := make(chan error, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				<-start
				res, err := s.Append(t.Context(), stream, expected, evs...)
				if err != nil {
					errs <- err
					return
				}
				results <- res
			})
		}
		close(start)
		wg.Wait()
		close(results)
		close(errs)
		for err := range errs {
			t.Errorf("retry with expected %s: %v", expected, err)
		}
		var first es.AppendResult
		for res := range results {
			if first.Stream == "" {
				first = res
			}
			if res != first || res.Version != 2 {
				t.Errorf("retries with expected %s returned %+v and %+v; want the same result at version 2", expected, first, res)
			}
		}
	}
}

// The same event ID appended concurrently to different streams is stored
// once; the other appends get a duplicate-ID error.
func TestConcurrentDuplicateIDAcrossStreams(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	e := ev("T", `{}`)
	start := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			<-start
			_, err := s.Append(t.Context(), "dup-"+string(rune('a'+i)), es.Any, e)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		if err == nil {
			wins++
			continue
		}
		de, ok := errors.AsType[*es.DuplicateEventIDError](err)
		if !ok || de.ID != e.ID {
			t.Errorf("append of a stored ID to another stream: %v; want a DuplicateEventIDError for %v", err, e.ID)
		}
	}
	if wins != 1 {
		t.Errorf("%d appends of one ID to different streams won; want 1", wins)
	}
}

// Input that is valid JSON but that text, or jsonb in a query that casts
// the data, cannot hold is refused with an InvalidEventError naming the
// event, not a database error.
func TestInputPostgreSQLCannotStore(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	good := ev("Good", `{}`)
	for _, tc := range []struct {
		name   string
		stream string
		event  es.EventData
		index  int
	}{
		{"nul-escape", "s", es.EventData{Type: "T", Data: []byte(`{"a":"x\u0000y"}`)}, 1},
		{"nul-escape-in-key", "s", es.EventData{Type: "T", Data: []byte(`{"\u0000":1}`)}, 1},
		{"lone-high-surrogate", "s", es.EventData{Type: "T", Data: []byte(`["\ud800"]`)}, 1},
		{"lone-low-surrogate", "s", es.EventData{Type: "T", Data: []byte(`"\uDC00x"`)}, 1},
		{"reversed-surrogates", "s", es.EventData{Type: "T", Data: []byte(`"\udc00\ud800"`)}, 1},
		{"nul-in-type", "s", es.EventData{Type: "T\x00", Data: []byte(`{}`)}, 1},
		{"nul-in-metadata", "s", es.EventData{Type: "T", Data: []byte(`{}`), Metadata: es.Metadata{"k": "a\x00b"}}, 1},
		{"nul-in-stream", "s\x00", es.EventData{Type: "T", Data: []byte(`{}`)}, -1},
	} {
		_, err := s.Append(ctx, tc.stream, es.Any, good, tc.event)
		ie, ok := errors.AsType[*es.InvalidEventError](err)
		if !ok || !errors.Is(err, es.ErrInvalidEvent) {
			t.Errorf("%s: Append error %v; want an *es.InvalidEventError", tc.name, err)
			continue
		}
		if ie.Index != tc.index {
			t.Errorf("%s: InvalidEventError.Index = %d, want %d (%v)", tc.name, ie.Index, tc.index, err)
		}
	}
	if _, err := s.ReadStream(ctx, "s", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("after refused appends, ReadStream(s): %v; want not found", err)
	}
	// What looks like those escapes but is not is fine.
	for _, data := range []string{`"\\u0000"`, `"\ud83d\ude00"`, `{"a":"\u0001"}`} {
		if _, err := s.Append(ctx, "fine", es.Any, es.EventData{Type: "T", Data: []byte(data)}); err != nil {
			t.Errorf("Append of %s: %v", data, err)
		}
	}
}

// A version conflict in AppendTx leaves the caller's transaction usable.
func TestAppendTxConflictKeepsTransaction(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.Append(ctx, "tx", es.NoStream, ev("T", `1`)); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := s.AppendTx(ctx, tx, "tx", es.NoStream, ev("T", `2`)); !errors.Is(err, es.ErrWrongExpectedVersion) {
		t.Fatalf("AppendTx with a wrong version: %v; want a conflict", err)
	}
	res, err := s.AppendTx(ctx, tx, "tx", es.Exact(1), ev("T", `2`))
	if err != nil {
		t.Fatalf("AppendTx after a conflict in the same transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 {
		t.Errorf("AppendTx result %+v; want version 2", res)
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, pgstore.Config{})
	ctx := t.Context()
	if _, err := s.LoadSnapshot(ctx, "order-1"); !errors.Is(err, es.ErrSnapshotNotFound) {
		t.Fatalf("LoadSnapshot of nothing: %v; want ErrSnapshotNotFound", err)
	}
	save := func(v int64, data string) {
		t.Helper()
		if err := s.SaveSnapshot(ctx, es.Snapshot{Stream: "order-1", Version: v, Revision: "r1", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	save(5, `{"v":5}`)
	save(3, `{"v":3}`) // older: ignored
	got, err := s.LoadSnapshot(ctx, "order-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 5 || string(got.Data) != `{"v":5}` || got.Revision != "r1" || got.TakenAt.IsZero() {
		t.Errorf("LoadSnapshot = %+v; want version 5", got)
	}
	if err := s.SaveSnapshot(ctx, es.Snapshot{Stream: "order-1", Version: 9, Data: []byte(`{"a":"\u0000"}`)}); err == nil {
		t.Error("SaveSnapshot accepted data jsonb cannot hold")
	}
}
