package es

import "strconv"

// ExpectedVersion is the condition an append puts on the stream's current
// version. The zero value is [Any].
type ExpectedVersion struct {
	kind    expectKind
	version int64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectStreamExists
	expectExact
)

var (
	// Any appends whatever the stream's version is.
	Any = ExpectedVersion{kind: expectAny}
	// NoStream appends only if the stream has no events yet.
	NoStream = ExpectedVersion{kind: expectNoStream}
	// StreamExists appends only if the stream has at least one event.
	StreamExists = ExpectedVersion{kind: expectStreamExists}
)

// Exact appends only if the stream is at version v, the number of events it
// holds. Exact(0) is the same condition as [NoStream]; a negative v matches
// no stream.
func Exact(v int64) ExpectedVersion {
	if v == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: expectExact, version: v}
}

// Version returns the exact version e asks for and true, or 0 and false when
// e is [Any] or [StreamExists]. [NoStream] reports (0, true).
func (e ExpectedVersion) Version() (int64, bool) {
	switch e.kind {
	case expectExact:
		return e.version, true
	case expectNoStream:
		return 0, true
	}
	return 0, false
}

// IsAny reports whether e is [Any].
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// IsStreamExists reports whether e is [StreamExists].
func (e ExpectedVersion) IsStreamExists() bool { return e.kind == expectStreamExists }

// Allows reports whether a stream at version current (0 when it has no
// events) satisfies e.
func (e ExpectedVersion) Allows(current int64) bool {
	switch e.kind {
	case expectNoStream:
		return current == 0
	case expectStreamExists:
		return current > 0
	case expectExact:
		return current == e.version
	}
	return true
}

// String describes e for error messages: "any", "no stream", "stream exists"
// or the exact version.
func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectNoStream:
		return "no stream"
	case expectStreamExists:
		return "stream exists"
	case expectExact:
		return strconv.FormatInt(e.version, 10)
	}
	return "any"
}
