package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
)

// Hold describes committed events that readers cannot see yet because an
// older transaction is still running.
type Hold struct {
	// Position is the first event readers cannot see.
	Position es.Position
	// TxID is the transaction holding readers back: the oldest one running
	// in the cluster.
	TxID uint64
	// PID is its backend process, 0 when it is a prepared transaction or
	// its session is not visible to the store's database user.
	PID int
	// State is its session's state, often "idle in transaction", and
	// Application its application_name; both may be empty.
	State, Application string
	// Prepared is the global ID of a prepared (two-phase) transaction, or "".
	Prepared string
	// Started is when the transaction began (or was prepared) and Age how
	// long it has been open, by the server's clock. Both are zero when
	// unknown.
	Started time.Time
	Age     time.Duration
}

// String says what holds readers back, e.g. "held at position 812:40 by
// transaction 812 (pid 4242, open 3m0s, idle in transaction)".
func (h Hold) String() string {
	s := fmt.Sprintf("held at position %s by transaction %d", h.Position, h.TxID)
	switch {
	case h.Prepared != "":
		s += fmt.Sprintf(" (prepared transaction %q, open %s)", h.Prepared, h.Age.Round(time.Second))
	case h.PID != 0:
		s += fmt.Sprintf(" (pid %d, open %s", h.PID, h.Age.Round(time.Second))
		if h.State != "" {
			s += ", " + h.State
		}
		if h.Application != "" {
			s += ", application " + h.Application
		}
		s += ")"
	}
	return s
}

// HeldBackReason is [Store.HeldBack] as one line, such as "held at position
// 812:40 by transaction 812 (pid 4242, open 3m0s, idle in transaction)". Its
// method value fits projections.StatusOptions.HeldBack:
//
//	opts := projections.StatusOptions{Store: store, Checkpoints: sink, HeldBack: store.HeldBackReason}
func (s *Store) HeldBackReason(ctx context.Context) (string, bool, error) {
	h, held, err := s.HeldBack(ctx)
	if err != nil || !held {
		return "", false, err
	}
	return h.String(), true, nil
}

// HeldBack reports whether committed events are hidden from readers by a
// transaction that is still running, and if so which one. Any transaction
// that has written anything, in any database of the server, holds back the
// events committed after it started writing, until it ends: ReadAll,
// Subscribe and Head only see events of transactions older than every
// running one.
func (s *Store) HeldBack(ctx context.Context) (Hold, bool, error) {
	var (
		h               Hold
		prepare         int64
		pid             *int32
		state, app, gid *string
		opened          *time.Time
		ageMicros       *int64
	)
	err := s.pool.QueryRow(ctx, s.q.hold).Scan(&h.Position.Commit, &prepare, &h.TxID,
		&pid, &state, &app, &opened, &gid, &ageMicros)
	if errors.Is(err, pgx.ErrNoRows) {
		return Hold{}, false, nil
	}
	if err != nil {
		return Hold{}, false, fmt.Errorf("pgstore: held back: %w", err)
	}
	h.Position.Prepare = uint64(prepare)
	if pid != nil {
		h.PID = int(*pid)
	}
	h.State = deref(state)
	h.Application = deref(app)
	h.Prepared = deref(gid)
	if opened != nil {
		h.Started = *opened
	}
	if ageMicros != nil {
		h.Age = time.Duration(*ageMicros) * time.Microsecond
	}
	return h, true, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
