package pgprocess

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections/pgsink"
)

// ErrNotFound means a process instance has no row.
var ErrNotFound = errors.New("pgprocess: process instance not found")

// Stats counts the rows of one process manager.
type Stats struct {
	Running, Completed, Failed int64
	// Uncorrelated counts the events of handled types that correlated to
	// no instance; Ignored the events for instances that were no longer
	// running. LastSkipped is the latest of either, if any.
	Uncorrelated, Ignored int64
	LastSkipped           *EventRef
	// PendingCommands are not dispatched yet; Retrying are among them and
	// failed at least once (a command that keeps failing is stuck there,
	// with its error in its row); Rejected were refused for good.
	PendingCommands, RetryingCommands, RejectedCommands int64
	// PendingDeadlines have not fired yet; Overdue are among them and due.
	PendingDeadlines, OverdueDeadlines int64
}

// EventRef names an event of the log.
type EventRef struct {
	Position es.Position
	Type     string
}

// Instance is a process instance's row.
type Instance struct {
	Process, ID string
	Status      string // StatusRunning, StatusCompleted or StatusFailed
	State       json.RawMessage
	Step        int64     // decisions applied
	LastEvent   *EventRef // the last event handed to it
	Error       string    // why it failed
	UpdatedAt   time.Time
}

// ReadStats returns the counts of process manager name in sink's read
// schema.
func ReadStats(ctx context.Context, sink *pgsink.Sink, name string) (Stats, error) {
	var s Stats
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		t := tablesOf(tx)
		var commit, prepare *int64
		var typ *string
		err := tx.QueryRow(ctx, t.expand(`SELECT
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'running'),
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'completed'),
			(SELECT count(*) FROM {{instances}} WHERE process = $1 AND status = 'failed'),
			coalesce((SELECT uncorrelated FROM {{counters}} WHERE process = $1), 0),
			coalesce((SELECT ignored FROM {{counters}} WHERE process = $1), 0),
			(SELECT last_skipped_commit FROM {{counters}} WHERE process = $1),
			(SELECT last_skipped_prepare FROM {{counters}} WHERE process = $1),
			(SELECT last_skipped_type FROM {{counters}} WHERE process = $1),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'pending'),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'pending' AND attempts > 0),
			(SELECT count(*) FROM {{outbox}} WHERE process = $1 AND status = 'rejected'),
			(SELECT count(*) FROM {{deadlines}} WHERE process = $1 AND status = 'pending'),
			(SELECT count(*) FROM {{deadlines}} WHERE process = $1 AND status = 'pending' AND due_at <= now())`), name).
			Scan(&s.Running, &s.Completed, &s.Failed, &s.Uncorrelated, &s.Ignored, &commit, &prepare, &typ,
				&s.PendingCommands, &s.RetryingCommands, &s.RejectedCommands, &s.PendingDeadlines, &s.OverdueDeadlines)
		if err == nil && commit != nil {
			s.LastSkipped = &EventRef{Position: es.Position{Commit: uint64(*commit), Prepare: uint64(*prepare)}, Type: *typ}
		}
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("pgprocess: read stats of %s: %w", name, err)
	}
	return s, nil
}

// ReadInstance returns instance id of process manager name, or an error
// that wraps [ErrNotFound].
func ReadInstance(ctx context.Context, sink *pgsink.Sink, name, id string) (Instance, error) {
	var in Instance
	err := sink.BeginFunc(ctx, func(ctx context.Context, tx *pgsink.Tx) error {
		var (
			commit, prepare *int64
			typ, errText    *string
		)
		err := tx.QueryRow(ctx, tablesOf(tx).expand(`SELECT process, id, status, state, step,
				last_event_commit, last_event_prepare, last_event_type, error, updated_at
			FROM {{instances}} WHERE process = $1 AND id = $2`), name, id).
			Scan(&in.Process, &in.ID, &in.Status, &in.State, &in.Step, &commit, &prepare, &typ, &errText, &in.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if commit != nil {
			in.LastEvent = &EventRef{Position: es.Position{Commit: uint64(*commit), Prepare: uint64(*prepare)}, Type: *typ}
		}
		if errText != nil {
			in.Error = *errText
		}
		return err
	})
	if err != nil {
		return Instance{}, fmt.Errorf("pgprocess: read instance %s of %s: %w", id, name, err)
	}
	return in, nil
}
