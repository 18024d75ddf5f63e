package projections

import (
	"context"
	"errors"
	"time"

	"github.com/stratadev/strata/es"
)

// RebuildSuffix ends the name of the checkpoint a sink's rebuild builds a
// new generation under: the projection's name + RebuildSuffix. pgsink's and
// elasticsink's rebuilds use it.
const RebuildSuffix = "#rebuild"

// VerifySuffix ends the name of the lock a verification holds, and the name
// its shadow generation runs under: the projection's name + VerifySuffix.
const VerifySuffix = "#verify"

// ErrVerifyRunning means a verification of the projection is running already.
var ErrVerifyRunning = errors.New("projections: a verification of the projection is running")

// DiffKind says how a row or document of a read model differs from its
// rebuild, in a sink's verification.
type DiffKind string

const (
	DiffMissing   DiffKind = "missing"   // in the rebuild, not in the live read model
	DiffExtra     DiffKind = "extra"     // in the live read model, not in the rebuild
	DiffDifferent DiffKind = "different" // in both, with different values
)

// RebuildProgress reports a rebuild's progress.
type RebuildProgress struct {
	Projection string
	// Done and Total count events up to the head of the log when the
	// rebuild started: Total all of them, Done those applied. They are
	// exact when the store is an [es.Counter] (pgstore, memstore). On
	// other stores, and in pgsink's RebuildStatus, which has no store,
	// Estimated is set and they are the Prepare parts of positions
	// instead: their ratio and the ETA still hold roughly, but they are
	// not event counts (on esdbstore they are byte offsets in its log).
	Done, Total int64
	Estimated   bool
	// At is the rebuild's checkpoint and Head the head of the log it runs
	// to, which Done and Total measure.
	At, Head es.Position
	Rate     float64       // events per second since this run started
	ETA      time.Duration // 0 when unknown
	Swapped  bool          // the new generation is live
	// Running says that a process holds the rebuild's lock, so that it is
	// running now rather than interrupted; set by pgsink's RebuildStatus.
	Running bool
}

// Estimate sets Rate from the events done since from, over elapsed, and ETA
// from Rate and what is left. Sinks that report rebuild progress use it.
func (p *RebuildProgress) Estimate(from int64, elapsed time.Duration) {
	if el := elapsed.Seconds(); el > 0 {
		p.Rate = float64(p.Done-from) / el
	}
	if p.Rate > 0 && p.Total > p.Done {
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
}

// Count turns Estimated progress into counts of events when store is an
// [es.Counter]: Done and Total count the events up to At and Head, and
// Rate scales with them. It leaves other progress as it is.
func (p *RebuildProgress) Count(ctx context.Context, store es.Store) error {
	c, ok := store.(es.Counter)
	if !ok || !p.Estimated {
		return nil
	}
	done, err := c.CountEvents(ctx, es.Start, p.At)
	if err != nil {
		return err
	}
	total, err := c.CountEvents(ctx, es.Start, p.Head)
	if err != nil {
		return err
	}
	if p.Done > 0 {
		p.Rate *= float64(done) / float64(p.Done)
	}
	p.Done, p.Total, p.Estimated = done, total, false
	if p.Swapped {
		p.Done = p.Total
	}
	return nil
}

// ProgressMeter measures a rebuild's progress as a [RebuildProgress]: in
// events when the store is an [es.Counter], counting only the events
// applied since the last measure, or else from the Prepare parts of
// positions, flagged as Estimated. Sinks that rebuild use it.
type ProgressMeter struct {
	name        string
	counter     es.Counter
	head        es.Position // the head the rebuild runs to
	total       int64
	at          es.Position // the position done counts up to
	done, start int64
	began       time.Time
}

// NewProgressMeter returns a meter for the rebuild of the projection name
// up to head, whose run starts at from. On a counting store it counts the
// events up to head and up to from.
func NewProgressMeter(ctx context.Context, store es.Store, name string, head, from es.Position) (*ProgressMeter, error) {
	m := &ProgressMeter{name: name, head: head, at: from, began: time.Now()}
	c, ok := store.(es.Counter)
	if !ok {
		m.total, m.done = int64(head.Prepare), int64(from.Prepare)
		m.start = m.done
		return m, nil
	}
	m.counter = c
	var err error
	if m.total, err = c.CountEvents(ctx, es.Start, head); err != nil {
		return nil, err
	}
	if m.done, err = c.CountEvents(ctx, es.Start, from); err != nil {
		return nil, err
	}
	m.start = m.done
	return m, nil
}

// Progress reports the progress of the rebuild whose checkpoint is at
// at; swapped says that the rebuild is done and swapped in. Rate and ETA
// are for the run since the meter was made.
func (m *ProgressMeter) Progress(ctx context.Context, at es.Position, swapped bool) (RebuildProgress, error) {
	pr := RebuildProgress{Projection: m.name, Total: m.total, Swapped: swapped, Estimated: m.counter == nil, At: at, Head: m.head}
	switch {
	case swapped:
		m.done = m.total
	case m.counter == nil:
		m.done = int64(at.Prepare)
	case m.at.Before(at):
		n, err := m.counter.CountEvents(ctx, m.at, at)
		if err != nil {
			return pr, err
		}
		m.done, m.at = m.done+n, at
	}
	pr.Done = m.done
	pr.Estimate(m.start, time.Since(m.began))
	return pr, nil
}
