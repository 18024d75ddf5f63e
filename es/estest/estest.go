// Package estest is the conformance suite every [es.Store] and
// [es.SnapshotStore] must pass. A store's own tests call [Run] (and
// [RunSnapshots]) with a function that returns a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		estest.Run(t, func(t *testing.T) es.Store { return memstore.New() }, estest.Config{})
//	}
//
// The suite checks what the es package documents: expected versions and
// their typed errors, input validation and size limits (see
// [Config.NewLimited]), atomic and idempotent appends, counts of a store
// that is an [es.Counter],
// stream and global reads, concurrent writers, subscriptions and, for stores
// whose writers can commit out of position order, that a reader never skips
// an event that commits late (see [Config.HoldAppend]).
//
// Every subtest gets its own store and runs in parallel with the others.
// Waits are bounded by a timeout, so a broken store fails instead of hanging.
// The suite allows a store to show new events in the global log a little
// late (a PostgreSQL store holds them back while an older transaction
// anywhere in the database is open): where it needs an event to be visible it
// waits for it, and where it needs to know that nothing else was written it
// appends a marker event to the stream "estest-marker" and reads up to it.
// [es.Store.ReadStream] must show a committed append at once.
//
// Event data is compared as JSON values, not as bytes, because stores may
// normalize it (a PostgreSQL store keeps data stored before its migration
// to json in the form jsonb printed it: keys reordered, spaces changed).
// Metadata that was appended as nil may read back as nil or empty.
package estest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratadev/strata/es"
)

// Config adapts the suite to a store.
type Config struct {
	// HoldAppend performs an append whose transaction stays open until commit is called
	// (commit returns the append's error, if any, at commit time). Stores whose writers can
	// commit out of position order (PostgreSQL) must set it so the suite can prove that no
	// event is skipped. nil: the store serializes commits in position order, and the
	// interleaving tests are skipped with that reason.
	//
	// The suite keeps at most four appends open at once while three other
	// goroutines read and write, so a store with a connection pool needs at
	// least eight connections.
	HoldAppend func(ctx context.Context, store es.Store, stream string, expected es.ExpectedVersion, events ...es.EventData) (commit func() error, err error)

	// NewLimited returns a fresh, empty store configured with the given
	// limits (its Config's MaxEventSize and MaxAppendSize). The size tests
	// use it to check that an event or an append over a limit is refused
	// with an [*es.InvalidEventError] that says how large it is, before
	// anything is written, and that one exactly at the limit is stored.
	// nil: the size tests are skipped with that reason.
	NewLimited func(t *testing.T, limits es.SizeLimits) es.Store
}

// timeout bounds each subtest: its waits for events, for subscriptions to
// end and for appends.
const timeout = 30 * time.Second

// markerStream is where the suite appends marker events; tests never use it
// otherwise.
const markerStream = "estest-marker"

// A test is one subtest of the suite. It gets a fresh store and a context
// that ends after timeout.
type test struct {
	name string
	run  func(t *testing.T, ctx context.Context, s es.Store)
}

// Run runs the conformance suite against the stores that newStore returns,
// one fresh empty store per subtest.
func Run(t *testing.T, newStore func(t *testing.T) es.Store, cfg Config) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
		// newStore, when set, replaces the one Run is given.
		newStore func(t *testing.T) es.Store
	}{
		{"Append", appendTests(), nil},
		{"ReadStream", readStreamTests(), nil},
		{"ReadAll", readAllTests(), nil},
		{"Concurrency", concurrencyTests(), nil},
		{"Subscribe", subscribeTests(), nil},
		{"OutOfOrderCommit", outOfOrderTests(cfg), nil},
		{"Size", sizeTests(), limitedStore(cfg)},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					ctx, cancel := context.WithTimeout(t.Context(), timeout)
					defer cancel()
					if g.newStore != nil {
						tt.run(t, ctx, g.newStore(t))
					} else {
						tt.run(t, ctx, newStore(t))
					}
				})
			}
		})
	}
}

// event returns an event with a fresh ID, the given type and a small JSON
// object as data.
func event(typ string, n int) es.EventData {
	return es.EventData{
		ID:   uuid.New(),
		Type: typ,
		Data: fmt.Appendf(nil, `{"n":%d,"type":%q}`, n, typ),
	}
}

// events returns n events of type typ.
func events(typ string, n int) []es.EventData {
	out := make([]es.EventData, n)
	for i := range out {
		out[i] = event(typ, i)
	}
	return out
}

func mustAppend(t *testing.T, ctx context.Context, s es.Store, stream string, expected es.ExpectedVersion, evs ...es.EventData) es.AppendResult {
	t.Helper()
	res, err := s.Append(ctx, stream, expected, evs...)
	if err != nil {
		t.Fatalf("Append(%q, expected %s, %d events): %v", stream, expected, len(evs), err)
	}
	if res.Stream != stream {
		t.Fatalf("Append(%q): result names stream %q", stream, res.Stream)
	}
	return res
}

func mustReadStream(t *testing.T, ctx context.Context, s es.Store, stream string, opts es.ReadStreamOptions) []es.Record {
	t.Helper()
	recs, err := s.ReadStream(ctx, stream, opts)
	if err != nil {
		t.Fatalf("ReadStream(%q, %+v): %v", stream, opts, err)
	}
	return recs
}

// readAll pages through the visible log after the position after.
func readAll(t *testing.T, ctx context.Context, s es.Store, after es.Position) []es.Record {
	t.Helper()
	var out []es.Record
	for {
		page, err := s.ReadAll(ctx, after, 0)
		if err != nil {
			t.Fatalf("ReadAll(%s, 0): %v", after, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
}

// waitVisible waits until the log's head has reached pos.
func waitVisible(t *testing.T, ctx context.Context, s es.Store, pos es.Position) {
	t.Helper()
	delay := time.Millisecond
	for {
		head, err := s.Head(ctx)
		if err != nil {
			t.Fatalf("Head: %v", err)
		}
		if !head.Before(pos) {
			return
		}
		// The store gives no signal for "visible", so poll with a backoff.
		select {
		case <-ctx.Done():
			t.Fatalf("position %s did not become visible: head stayed at %s (%v)", pos, head, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// mark appends a marker event and waits until it is visible in the log, so
// that everything committed before it is visible too.
func mark(t *testing.T, ctx context.Context, s es.Store) es.Record {
	t.Helper()
	m := event("estest.Marker", 0)
	res := mustAppend(t, ctx, s, markerStream, es.Any, m)
	waitVisible(t, ctx, s, res.Position)
	return es.Record{ID: m.ID, Stream: markerStream, Version: res.Version, Position: res.Position, Type: m.Type, Data: m.Data}
}

// settledLog returns the whole log, without marker events, once everything
// appended before the call is visible.
func settledLog(t *testing.T, ctx context.Context, s es.Store) []es.Record {
	t.Helper()
	mark(t, ctx, s)
	return withoutMarkers(readAll(t, ctx, s, es.Start))
}

func withoutMarkers(recs []es.Record) []es.Record {
	var out []es.Record
	for _, r := range recs {
		if r.Stream != markerStream {
			out = append(out, r)
		}
	}
	return out
}

func ids(recs []es.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func eventIDs(evs []es.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func versions(recs []es.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Version
	}
	return out
}

// checkIDs fails the test if got does not hold exactly the IDs want, in order.
func checkIDs(t *testing.T, what string, got []es.Record, want []uuid.UUID) {
	t.Helper()
	g := ids(got)
	if slices.Equal(g, want) {
		return
	}
	i := 0
	for i < len(g) && i < len(want) && g[i] == want[i] {
		i++
	}
	msg := fmt.Sprintf("%s: got %d events, want %d; they differ from index %d on", what, len(g), len(want), i)
	count := make(map[uuid.UUID]int)
	for _, id := range g {
		count[id]++
	}
	var missing, extra, twice []uuid.UUID
	for _, id := range want {
		if count[id] == 0 {
			missing = append(missing, id)
		}
		count[id]--
	}
	for _, r := range got {
		switch n := count[r.ID]; {
		case n > 0 && !slices.Contains(want, r.ID):
			extra = append(extra, r.ID)
		case n > 0:
			twice = append(twice, r.ID)
		}
		count[r.ID] = 0
	}
	for _, l := range []struct {
		name string
		ids  []uuid.UUID
	}{{"missing", missing}, {"unexpected", extra}, {"more often than wanted", twice}} {
		if len(l.ids) > 0 {
			msg += fmt.Sprintf("\n%s (%d): %v", l.name, len(l.ids), l.ids[:min(len(l.ids), 5)])
		}
	}
	if len(missing)+len(extra)+len(twice) == 0 {
		msg += "\nthe same events in another order"
	}
	if len(g)+len(want) <= 20 {
		msg += fmt.Sprintf("\n got: %v\nwant: %v", g, want)
	}
	t.Fatal(msg)
}

// checkLogOrder fails the test unless positions strictly increase and no ID
// appears twice.
func checkLogOrder(t *testing.T, what string, recs []es.Record) {
	t.Helper()
	seen := make(map[uuid.UUID]int, len(recs))
	for i, r := range recs {
		if r.Position.IsZero() {
			t.Fatalf("%s: record %d (%s@%d) has the zero position", what, i, r.Stream, r.Version)
		}
		if i > 0 && !recs[i-1].Position.Before(r.Position) {
			t.Fatalf("%s: positions do not increase: record %d at %s, record %d at %s", what, i-1, recs[i-1].Position, i, r.Position)
		}
		if j, dup := seen[r.ID]; dup {
			t.Fatalf("%s: event %v appears twice, at %d and %d", what, r.ID, j, i)
		}
		seen[r.ID] = i
	}
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func metadataEqual(a, b es.Metadata) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkRecord fails the test unless r holds e as event number version of
// stream.
func checkRecord(t *testing.T, r es.Record, stream string, version int64, e es.EventData) {
	t.Helper()
	var problems []string
	if e.ID != uuid.Nil && r.ID != e.ID {
		problems = append(problems, fmt.Sprintf("ID %v, want %v", r.ID, e.ID))
	}
	if r.ID == uuid.Nil {
		problems = append(problems, "ID is the zero UUID")
	}
	if r.Stream != stream {
		problems = append(problems, fmt.Sprintf("Stream %q, want %q", r.Stream, stream))
	}
	if r.Version != version {
		problems = append(problems, fmt.Sprintf("Version %d, want %d", r.Version, version))
	}
	if r.Position.IsZero() {
		problems = append(problems, "Position is Start")
	}
	if r.Type != e.Type {
		problems = append(problems, fmt.Sprintf("Type %q, want %q", r.Type, e.Type))
	}
	if !jsonEqual(r.Data, e.Data) {
		problems = append(problems, fmt.Sprintf("Data %s, want the JSON value %s", r.Data, e.Data))
	}
	if !metadataEqual(r.Metadata, e.Metadata) {
		problems = append(problems, fmt.Sprintf("Metadata %v, want %v", r.Metadata, e.Metadata))
	}
	if r.RecordedAt.IsZero() {
		problems = append(problems, "RecordedAt is zero")
	} else if d := time.Since(r.RecordedAt); d > time.Hour || d < -time.Hour {
		problems = append(problems, fmt.Sprintf("RecordedAt %v is %v away from now", r.RecordedAt, d))
	}
	if len(problems) > 0 {
		t.Errorf("record %s@%d: %s", stream, version, strings.Join(problems, "; "))
	}
}

// checkSameRecord fails the test unless a and b are the same stored event.
func checkSameRecord(t *testing.T, what string, a, b es.Record) {
	t.Helper()
	if a.ID != b.ID || a.Stream != b.Stream || a.Version != b.Version || a.Position != b.Position ||
		a.Type != b.Type || !jsonEqual(a.Data, b.Data) || !metadataEqual(a.Metadata, b.Metadata) ||
		!a.RecordedAt.Equal(b.RecordedAt) {
		t.Errorf("%s: records differ:\n%+v\n%+v", what, a, b)
	}
}

// checkConflict fails the test unless err is a version conflict with the
// given details.
func checkConflict(t *testing.T, err error, stream string, expected es.ExpectedVersion, actual int64) {
	t.Helper()
	if err == nil {
		t.Fatalf("append to %q with expected %s succeeded; want a version conflict (stream at %d)", stream, expected, actual)
	}
	if !errors.Is(err, es.ErrWrongExpectedVersion) {
		t.Fatalf("append to %q with expected %s: error %q does not wrap es.ErrWrongExpectedVersion", stream, expected, err)
	}
	vc, ok := errors.AsType[*es.VersionConflictError](err)
	if !ok {
		t.Fatalf("append to %q with expected %s: error %q is not an *es.VersionConflictError", stream, expected, err)
	}
	if vc.Stream != stream || vc.Expected != expected || vc.Actual != actual {
		t.Fatalf("append to %q with expected %s: conflict says stream %q, expected %s, actual %d; want %q, %s, %d",
			stream, expected, vc.Stream, vc.Expected, vc.Actual, stream, expected, actual)
	}
}

// checkInvalid fails the test unless err is an invalid-input error naming
// stream and index.
func checkInvalid(t *testing.T, err error, stream string, index int) {
	t.Helper()
	if err == nil {
		t.Fatalf("append to %q succeeded; want an error wrapping es.ErrInvalidEvent", stream)
	}
	if !errors.Is(err, es.ErrInvalidEvent) {
		t.Fatalf("append to %q: error %q does not wrap es.ErrInvalidEvent", stream, err)
	}
	ie, ok := errors.AsType[*es.InvalidEventError](err)
	if !ok {
		t.Fatalf("append to %q: error %q is not an *es.InvalidEventError", stream, err)
	}
	if ie.Index != index {
		t.Errorf("append to %q: InvalidEventError.Index is %d, want %d (%v)", stream, ie.Index, index, err)
	}
	// A stream ID that is too long may be shortened in the error.
	shortened := len(stream) > es.MaxStreamLength && ie.Stream != "" && strings.HasPrefix(stream, strings.TrimSuffix(ie.Stream, "…"))
	if ie.Stream != stream && !shortened {
		t.Errorf("append to %q: InvalidEventError.Stream is %q", stream, ie.Stream)
	}
}

// checkNotFound fails the test unless reading stream reports that it has no
// events.
func checkNotFound(t *testing.T, ctx context.Context, s es.Store, stream string, opts es.ReadStreamOptions) {
	t.Helper()
	recs, err := s.ReadStream(ctx, stream, opts)
	if err == nil {
		t.Fatalf("ReadStream(%q, %+v) returned %d events and no error; want es.ErrStreamNotFound", stream, opts, len(recs))
	}
	if !errors.Is(err, es.ErrStreamNotFound) {
		t.Fatalf("ReadStream(%q, %+v): error %q does not wrap es.ErrStreamNotFound", stream, opts, err)
	}
	nf, ok := errors.AsType[*es.StreamNotFoundError](err)
	if !ok {
		t.Fatalf("ReadStream(%q): error %q is not an *es.StreamNotFoundError", stream, err)
	}
	if nf.Stream != stream {
		t.Errorf("ReadStream(%q): StreamNotFoundError.Stream is %q", stream, nf.Stream)
	}
}
