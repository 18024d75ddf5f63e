package kafkasink

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
)

// The headers of a published message follow the CloudEvents Kafka protocol
// binding in binary content mode (https://github.com/cloudevents/spec,
// kafka-protocol-binding.md): the value is the integration event's data,
// and its attributes are headers named ce_<attribute>, so that services in
// any language can read them with a CloudEvents SDK or by hand. Trace
// context travels in the W3C headers traceparent and tracestate, as
// OpenTelemetry's instrumentations for Kafka carry it.
const (
	HeaderSpecVersion   = "ce_specversion"   // always "1.0"
	HeaderID            = "ce_id"            // the source event's ID: unique per message, stable across republishing
	HeaderSource        = "ce_source"        // who published it (Config.Source)
	HeaderType          = "ce_type"          // the integration event's type, e.g. "order.placed.v1"
	HeaderSubject       = "ce_subject"       // the source event's stream
	HeaderTime          = "ce_time"          // when the source event was recorded, RFC 3339
	HeaderContentType   = "content-type"     // the value's media type, "application/json" by default
	HeaderStreamVersion = "ce_streamversion" // the source event's version in its stream
	HeaderPosition      = "ce_logposition"   // the source event's position in the log, as es.Position prints it
	HeaderCorrelationID = "ce_correlationid" // from the source event's metadata
	HeaderCausationID   = "ce_causationid"   // from the source event's metadata
	HeaderTraceParent   = "traceparent"      // W3C trace context, from the source event's metadata
	HeaderTraceState    = "tracestate"       // W3C trace context, from the source event's metadata
)

// SpecVersion is the CloudEvents version of the headers.
const SpecVersion = "1.0"

// ContentTypeJSON is the content type of a message whose value is JSON.
const ContentTypeJSON = "application/json"

// ErrBadHeaders means a message's headers do not describe an integration
// event: a required header is missing or malformed. [ParseHeaders] returns
// it wrapped in a [*HeaderError].
var ErrBadHeaders = errors.New("kafkasink: bad message headers")

// HeaderError says which header of a message was missing or malformed.
type HeaderError struct {
	Header string // e.g. "ce_id"
	Value  string // the value found; empty when the header is missing
	Reason string // e.g. "missing", "not a UUID"
}

func (e *HeaderError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("kafkasink: message header %s: %s", e.Header, e.Reason)
	}
	return fmt.Sprintf("kafkasink: message header %s=%q: %s", e.Header, truncate(e.Value, 64), e.Reason)
}

func (e *HeaderError) Unwrap() error { return ErrBadHeaders }

// Envelope is what the headers of a published message say about it: the
// integration event's type and the source event it was made from.
type Envelope struct {
	// ID is the source event's ID. One source event gives at most one
	// message per topic with this ID, and republishing it (a rebuild, a
	// batch retried after an aborted transaction) gives the same ID, so a
	// consumer can derive idempotency keys from it.
	ID uuid.UUID
	// Type is the integration event's type. Required.
	Type string
	// Source names the publisher. Required.
	Source string
	// ContentType is the media type of the value. Defaults to
	// ContentTypeJSON.
	ContentType string
	// Subject is the source event's stream; Version its version there;
	// Position its position in the log; Time when it was recorded. They
	// are optional on the consuming side, so that messages published by
	// other tools can be read too.
	Subject  string
	Version  int64
	Position es.Position
	Time     time.Time
	// CorrelationID, CausationID, TraceParent and TraceState carry the
	// source event's correlation, causation and trace context on.
	CorrelationID, CausationID string
	TraceParent, TraceState    string
}

// Headers returns e as the headers of a message.
func (e Envelope) Headers() []kgo.RecordHeader {
	h := make([]kgo.RecordHeader, 0, 13)
	add := func(k, v string) {
		if v != "" {
			h = append(h, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	add(HeaderSpecVersion, SpecVersion)
	add(HeaderID, e.ID.String())
	add(HeaderSource, e.Source)
	add(HeaderType, e.Type)
	add(HeaderContentType, cmpOr(e.ContentType, ContentTypeJSON))
	add(HeaderSubject, e.Subject)
	if !e.Time.IsZero() {
		add(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	}
	if e.Version > 0 {
		add(HeaderStreamVersion, strconv.FormatInt(e.Version, 10))
	}
	if e.Position != es.Start {
		add(HeaderPosition, e.Position.String())
	}
	add(HeaderCorrelationID, e.CorrelationID)
	add(HeaderCausationID, e.CausationID)
	add(HeaderTraceParent, e.TraceParent)
	add(HeaderTraceState, e.TraceState)
	return h
}

// ParseHeaders reads the envelope of a message from its headers. ce_id
// (a UUID), ce_type and ce_source are required, and ce_specversion, when
// present, must be 1.0; the other headers are optional but must be well
// formed when present. A problem is a [*HeaderError] naming the header.
// Headers it does not know are ignored.
func ParseHeaders(headers []kgo.RecordHeader) (Envelope, error) {
	var e Envelope
	seen := make(map[string]bool, len(headers))
	for _, h := range headers {
		v := string(h.Value)
		if seen[h.Key] {
			if isKnown(h.Key) {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "appears more than once"}
			}
			continue
		}
		seen[h.Key] = true
		var err error
		switch h.Key {
		case HeaderSpecVersion:
			if v != SpecVersion {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "unsupported CloudEvents version; want " + SpecVersion}
			}
		case HeaderID:
			if e.ID, err = uuid.Parse(v); err != nil {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "not a UUID"}
			}
		case HeaderType:
			e.Type = v
		case HeaderSource:
			e.Source = v
		case HeaderContentType:
			e.ContentType = v
		case HeaderSubject:
			e.Subject = v
		case HeaderTime:
			if e.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "not an RFC 3339 time"}
			}
		case HeaderStreamVersion:
			if e.Version, err = strconv.ParseInt(v, 10, 64); err != nil || e.Version <= 0 {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "not a positive integer"}
			}
		case HeaderPosition:
			if e.Position, err = es.ParsePosition(v); err != nil {
				return Envelope{}, &HeaderError{Header: h.Key, Value: v, Reason: "not a log position"}
			}
		case HeaderCorrelationID:
			e.CorrelationID = v
		case HeaderCausationID:
			e.CausationID = v
		case HeaderTraceParent:
			e.TraceParent = v
		case HeaderTraceState:
			e.TraceState = v
		}
	}
	for _, req := range []struct {
		header string
		ok     bool
	}{{HeaderID, e.ID != uuid.Nil}, {HeaderType, e.Type != ""}, {HeaderSource, e.Source != ""}} {
		if !req.ok {
			return Envelope{}, &HeaderError{Header: req.header, Reason: "missing"}
		}
	}
	if e.ContentType == "" {
		e.ContentType = ContentTypeJSON
	}
	return e, nil
}

func isKnown(key string) bool {
	switch key {
	case HeaderSpecVersion, HeaderID, HeaderSource, HeaderType, HeaderSubject, HeaderTime, HeaderContentType,
		HeaderStreamVersion, HeaderPosition, HeaderCorrelationID, HeaderCausationID, HeaderTraceParent, HeaderTraceState:
		return true
	}
	return false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// EnvelopeOf is the envelope of a message of type typ made from the record
// rec, published by source: its ID, stream, version, position and time,
// and the correlation, causation and trace context of its metadata.
func EnvelopeOf(rec es.Record, typ, source string) Envelope {
	return Envelope{
		ID: rec.ID, Type: typ, Source: source, ContentType: ContentTypeJSON,
		Subject: rec.Stream, Version: rec.Version, Position: rec.Position, Time: rec.RecordedAt,
		CorrelationID: rec.Metadata[es.MetaCorrelationID],
		CausationID:   rec.Metadata[es.MetaCausationID],
		TraceParent:   rec.Metadata[es.MetaTraceParent],
		TraceState:    rec.Metadata[es.MetaTraceState],
	}
}
