package peerbench_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hallgren/eventsourcing"

	"github.com/stratadev/strata/es"
)

// lateSide is a side whose test can hold an append open and read the log
// the way its live reader does, a step at a time.
type lateSide interface {
	side
	// hold appends one event to stream, a new stream, in a transaction it
	// leaves open, and returns the function that commits it.
	hold(ctx context.Context, stream string) (commit func() error, err error)
	// reader returns a function that reads what the live reader would
	// read next: the events after the last one it returned. strata's
	// waits, as its subscription does, until it can return at least
	// atLeast events; the others return what they read at once, which is
	// all they will ever read there (their position has moved on).
	reader() func(ctx context.Context, atLeast int) ([]key, error)
}

// TestLateCommit shows the hazard the gap check is about, step by step: an
// append whose transaction took its position first (late) commits after a
// later one (early) that a reader has already read. strata's reader waits
// for late and returns both; the naive raw reader and the peer's global
// reader move past late and never return it.
func TestLateCommit(t *testing.T) {
	t.Parallel()
	sides := newSides(t, fast)
	want := map[string][][]key{
		"strata": {nil, {{"late", 1}, {"early", 1}}},
		"raw":    {{{"early", 1}}, nil},
		"peer":   {{{"early", 1}}, nil},
	}
	for _, name := range sideNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := sides[name].(lateSide)
			read := s.reader()
			commit, err := s.hold(ctx, "late")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.append(ctx, "early", 0, 1); err != nil {
				t.Fatal(err)
			}
			first, err := read(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := commit(); err != nil {
				t.Fatal(err)
			}
			second, err := read(ctx, len(want[name][1]))
			if err != nil {
				t.Fatal(err)
			}
			if got := [][]key{first, second}; !reflect.DeepEqual(got, want[name]) {
				t.Errorf("reads before and after late commits: got %v, want %v", got, want[name])
			}
		})
	}
}

func (s *strataSide) hold(ctx context.Context, stream string) (func() error, error) {
	ev, err := s.encode(stream, 1)
	if err != nil {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.AppendTx(ctx, tx, stream, es.NoStream, ev); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return func() error { return tx.Commit(context.Background()) }, nil
}

func (s *strataSide) reader() func(ctx context.Context, atLeast int) ([]key, error) {
	after := es.Start
	return func(ctx context.Context, atLeast int) ([]key, error) {
		var ks []key
		if atLeast == 0 {
			recs, err := s.store.ReadAll(ctx, after, readPage)
			for _, r := range recs {
				ks = append(ks, key{r.Stream, r.Version})
				after = r.Position
			}
			return ks, err
		}
		ctx, cancel := context.WithTimeout(ctx, settleMax)
		defer cancel()
		for recs, err := range s.store.Subscribe(ctx, es.SubscribeOptions{After: after}) {
			if err != nil {
				return ks, err
			}
			for _, r := range recs {
				ks = append(ks, key{r.Stream, r.Version})
				after = r.Position
			}
			if len(ks) >= atLeast {
				break
			}
		}
		return ks, ctx.Err()
	}
}

func (s *rawSide) hold(ctx context.Context, stream string) (func() error, error) {
	data, meta, err := s.row(stream, 1)
	if err != nil {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.events+" (stream, version, type, data, metadata) VALUES ($1, 1, $2, $3, $4)",
		stream, eventType, data, meta); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return func() error { return tx.Commit(context.Background()) }, nil
}

func (s *rawSide) reader() func(ctx context.Context, atLeast int) ([]key, error) {
	var after int64
	return func(ctx context.Context, _ int) ([]key, error) {
		var ks []key
		var err error
		after, _, err = s.page(ctx, after, func(ev readEvent, _ es.Position) {
			ks = append(ks, key{ev.Stream, ev.Version})
		})
		return ks, err
	}
}

// hold runs the statements of the peer's Save (eventstore/sql's
// Postgres.Save) up to its commit: Save itself cannot be paused.
func (s *peerSide) hold(ctx context.Context, stream string) (func() error, error) {
	data, err := json.Marshal(newOrderPlaced(stream, 1))
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(metadata())
	if err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (id, version, reason, type, timestamp, data, metadata) VALUES ($1, 1, $2, 'Order', $3, $4, $5)`,
		stream, eventType, time.Now().UTC().Format(time.RFC3339), data, meta); err != nil {
		tx.Rollback()
		return nil, err
	}
	return tx.Commit, nil
}

// reader runs a projection on the peer's global reader once per call, as
// its Run does at each trigger or pace.
func (s *peerSide) reader() func(ctx context.Context, atLeast int) ([]key, error) {
	var ks []key
	p := eventsourcing.NewProjection(s.store.All(0), func(e eventsourcing.Event) error {
		ks = append(ks, key{e.AggregateID(), int64(e.Version())})
		return nil
	})
	return func(context.Context, int) ([]key, error) {
		ks = nil
		_, res := p.RunOnce()
		return ks, res.Error
	}
}
