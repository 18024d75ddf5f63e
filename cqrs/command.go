package cqrs

import (
	"reflect"
	"strconv"

	"github.com/google/uuid"
)

// Identified is implemented by commands that carry an ID, which makes them
// idempotent: dispatching the same command again (same ID, aggregate and
// payload) appends nothing and returns the original [Result], while another
// command of the type with the same ID gets a [*CommandIDReusedError] (see
// the package documentation). The ID is usually chosen by the client, for
// example from an HTTP Idempotency-Key header or from the ID of the event a
// process reacted to. It must be unique per command type; an empty ID means
// the command has none. A command with an ID must encode as JSON.
//
// A command's ID also becomes the causation ID of the events it appends.
type Identified interface {
	CommandID() string
}

// CommandName returns the name strata uses for a command's type in errors,
// logs, spans and the [es.MetaCommandType] metadata key: the Go package name
// and the type name, as in "orders.PlaceOrder". A pointer is named after the
// type it points to. The name changes if the package or the type is renamed;
// since it also seeds the IDs of idempotent commands' events (see
// [EventID]), rename command types only between deployments that leave no
// retries outstanding.
func CommandName(cmd any) string {
	t := reflect.TypeOf(cmd)
	if t == nil {
		return "<nil>"
	}
	return typeName(t)
}

func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.String()
}

// eventIDSpace is the UUID namespace of the event IDs that commands derive.
var eventIDSpace = uuid.MustParse("c1035c86-5ede-4d4e-bb37-e7be9f2f7329")

// EventID returns the ID of the index-th event (from 0) appended for the
// command of type commandType (see [CommandName]) with ID commandID: a
// version 5 UUID of the three, so that a retried command appends events with
// the same IDs and the store recognizes them. Handlers made with [Aggregate]
// use it for every command that has an ID ([Identified]); a custom handler
// that appends directly can use it too.
func EventID(commandType, commandID string, index int) uuid.UUID {
	b := make([]byte, 0, len(commandType)+len(commandID)+8)
	b = append(b, commandType...)
	b = append(b, 0)
	b = append(b, commandID...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(index), 10)
	return uuid.NewSHA1(eventIDSpace, b)
}

// commandID returns cmd's ID if its type implements [Identified] with a
// value or a pointer receiver, and "" otherwise.
func commandID[C any](cmd C) string {
	if c, ok := any(cmd).(Identified); ok {
		return c.CommandID()
	}
	if c, ok := any(&cmd).(Identified); ok {
		return c.CommandID()
	}
	return ""
}
