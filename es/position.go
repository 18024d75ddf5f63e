package es

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Position is a place in the global log. It is a pair ordered first by Commit
// and then by Prepare, so it can carry PostgreSQL's (transaction id, sequence)
// as well as EventStoreDB's (commit, prepare) positions. The zero value,
// [Start], lies before every event.
//
// Positions are only comparable between records of the same store.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event of the log.
var Start = Position{}

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.Commit, q.Commit); c != 0 {
		return c
	}
	return cmp.Compare(p.Prepare, q.Prepare)
}

// Before reports whether p comes before q in the log.
func (p Position) Before(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is [Start].
func (p Position) IsZero() bool { return p == Start }

// String formats p as "commit:prepare". [ParsePosition] reads it back, so the
// string can travel as a consistency token in HTTP headers and URLs.
func (p Position) String() string {
	return strconv.FormatUint(p.Commit, 10) + ":" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition parses a position formatted by [Position.String].
func ParsePosition(s string) (Position, error) {
	c, prep, ok := strings.Cut(s, ":")
	if !ok {
		return Position{}, fmt.Errorf("es: parse position %q: want commit:prepare", s)
	}
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("es: parse position %q: commit: %w", s, err)
	}
	prepare, err := strconv.ParseUint(prep, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("es: parse position %q: prepare: %w", s, err)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// MarshalText implements [encoding.TextMarshaler] with the format of [Position.String].
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
