package cqrs

import (
	"context"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"

	"github.com/stratadev/strata/es"
)

// scope describes the command being handled; the bus puts one in the
// context of every dispatch. WithCorrelationID also uses it, outside a
// dispatch, with only the correlation ID set.
type scope struct {
	command     string // the command's type name; "" outside a dispatch
	commandID   string // the command's own ID; "" when it has none
	causation   string // commandID, or an ID made for this dispatch
	correlation string
}

type scopeKey struct{}

type metadataKey struct{}

func scopeFrom(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}

// newScope describes a dispatch of the command of type name with ID id ("" if
// it has none). The causation ID is the command's ID, or a new version 7
// UUID; the correlation ID comes from ctx, or else starts with this command.
func newScope(ctx context.Context, name, id string) *scope {
	s := &scope{command: name, commandID: id, causation: id}
	if s.causation == "" {
		s.causation = uuid.Must(uuid.NewV7()).String()
	}
	s.correlation = CorrelationID(ctx)
	if s.correlation == "" {
		s.correlation = s.causation
	}
	return s
}

// WithCorrelationID returns a context whose dispatched commands store id as
// the correlation ID of their events ([es.MetaCorrelationID]). Without one, a
// dispatch starts a new correlation: its causation ID. Setting an empty id
// returns ctx unchanged.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	var s scope
	if old := scopeFrom(ctx); old != nil {
		s = *old
	}
	s.correlation = id
	return context.WithValue(ctx, scopeKey{}, &s)
}

// CorrelationID returns the correlation ID of ctx: the one set with
// [WithCorrelationID] or [ContextFromMetadata], or, while a command is
// handled, the one its events get. It returns "" when there is none.
func CorrelationID(ctx context.Context) string {
	if s := scopeFrom(ctx); s != nil {
		return s.correlation
	}
	return ""
}

// MetaCommandHash is the metadata key of the hash of the command that
// appended an event, stored by handlers made with [Aggregate] for commands
// with an ID (see [Identified]): the hex SHA-256 of the command's JSON
// encoding. A later command with the same ID is the same command only if
// its hash is the same.
const MetaCommandHash = "command_hash"

// reserved reports whether key is filled by strata on appended events.
func reserved(key string) bool {
	switch key {
	case es.MetaCorrelationID, es.MetaCausationID, es.MetaCommandType, es.MetaTraceParent, es.MetaTraceState, MetaCommandHash:
		return true
	}
	return false
}

// WithMetadata returns a context whose dispatched commands store md with
// every event they append, in addition to what strata stores (see
// [EventMetadata]). Calls add up: a later key replaces an earlier one. The
// keys strata fills ([es.MetaCorrelationID], [es.MetaCausationID],
// [es.MetaCommandType], [es.MetaTraceParent], [es.MetaTraceState],
// [MetaCommandHash]) are
// ignored here, so that metadata copied from a request can never forge them;
// use [WithCorrelationID] and the OpenTelemetry context instead.
func WithMetadata(ctx context.Context, md es.Metadata) context.Context {
	old, _ := ctx.Value(metadataKey{}).(es.Metadata)
	merged := make(es.Metadata, len(old)+len(md))
	for k, v := range old {
		merged[k] = v
	}
	for k, v := range md {
		if !reserved(k) {
			merged[k] = v
		}
	}
	return context.WithValue(ctx, metadataKey{}, merged)
}

// EventMetadata returns the metadata for the events of the command being
// handled in ctx: the user's metadata from [WithMetadata], then the
// correlation ID, the causation ID (the command's ID, see [Identified], or
// an ID made for the dispatch), the command's type name and, when ctx
// carries a valid OpenTelemetry span context, its W3C traceparent and
// tracestate. Handlers made with [Aggregate] store it with every event; a
// custom handler that appends directly should do the same. Outside a
// dispatch it holds only what ctx carries.
func EventMetadata(ctx context.Context) es.Metadata {
	user, _ := ctx.Value(metadataKey{}).(es.Metadata)
	md := make(es.Metadata, len(user)+5)
	for k, v := range user {
		md[k] = v
	}
	if s := scopeFrom(ctx); s != nil {
		setIf(md, es.MetaCorrelationID, s.correlation)
		setIf(md, es.MetaCausationID, s.causation)
		setIf(md, es.MetaCommandType, s.command)
	}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(md))
	return md
}

func setIf(md es.Metadata, key, value string) {
	if value != "" {
		md[key] = value
	}
}

// ContextFromMetadata returns ctx extended with what an event's metadata
// says about its origin: the remote span context from its W3C trace context,
// so that a span started from the returned context continues the trace of
// the command that appended the event, and its correlation ID, so that
// commands dispatched from the returned context join the same correlation.
// Projections and process managers call it for each record they handle.
func ContextFromMetadata(ctx context.Context, md es.Metadata) context.Context {
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(md))
	return WithCorrelationID(ctx, md[es.MetaCorrelationID])
}
