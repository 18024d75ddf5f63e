package es

import (
	"time"

	"github.com/google/uuid"
)

// Well-known metadata keys. Stores keep metadata as a JSON object of strings;
// the cqrs package fills these for every event it appends.
const (
	MetaCorrelationID = "correlation_id" // the ID shared by everything one request caused
	MetaCausationID   = "causation_id"   // the ID of the command or event that caused this event
	MetaCommandType   = "command_type"   // the Go type of the command that produced the event
	MetaTraceParent   = "traceparent"    // W3C trace context of the producer
	MetaTraceState    = "tracestate"     // W3C trace state of the producer
)

// Metadata is the string map stored next to an event's data.
type Metadata map[string]string

// Clone returns a copy of m that shares nothing with it.
func (m Metadata) Clone() Metadata {
	if m == nil {
		return nil
	}
	c := make(Metadata, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// EventData is an event to append.
type EventData struct {
	// ID identifies the event for idempotency. When it is the zero UUID the
	// store assigns a new version 7 UUID at append time.
	ID uuid.UUID
	// Type names the event, as registered in a [Registry]. Required.
	Type string
	// Data is the event's payload as a JSON value. Required.
	Data []byte
	// Metadata is stored with the event; nil stores an empty object.
	Metadata Metadata
}

// Record is an event as stored: the data that was appended plus where and
// when the store put it.
type Record struct {
	ID         uuid.UUID
	Stream     string
	Version    int64    // the event's version in its stream, from 1
	Position   Position // the event's place in the global log
	Type       string
	Data       []byte // JSON
	Metadata   Metadata
	RecordedAt time.Time
}

// AppendResult says where an append put its events.
type AppendResult struct {
	Stream string
	// Version is the stream's version after the append: the version of the
	// last event written.
	Version int64
	// Position is the global position of the last event written. A projection
	// whose checkpoint has reached it has seen the whole append, which makes
	// it the consistency token for read-your-writes.
	Position Position
}
