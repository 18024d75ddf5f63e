package esdbstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stratadev/strata/es"
)

// Metadata keys EventStoreDB's system projections read ($by_correlation_id).
// The store writes them next to strata's own keys and drops them again on
// read, so metadata round-trips unchanged.
const (
	esdbCorrelationID = "$correlationId"
	esdbCausationID   = "$causationId"
	// rawMetadataKey holds custom metadata that is not a JSON object, as
	// other writers may store.
	rawMetadataKey = "esdb.custom_metadata"
)

var mirrored = [...]struct{ ours, theirs string }{
	{es.MetaCorrelationID, esdbCorrelationID},
	{es.MetaCausationID, esdbCausationID},
}

// encodeMetadata returns the custom metadata bytes for md.
func encodeMetadata(md es.Metadata) ([]byte, error) {
	if len(md) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(md)+2)
	for k, v := range md {
		out[k] = v
	}
	for _, m := range mirrored {
		if v, ok := md[m.ours]; ok {
			if _, taken := md[m.theirs]; !taken {
				out[m.theirs] = v
			}
		}
	}
	return json.Marshal(out)
}

// decodeMetadata reads custom metadata written by encodeMetadata, or by
// another writer: values that are not strings keep their JSON text.
func decodeMetadata(b []byte) es.Metadata {
	if len(b) == 0 {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return es.Metadata{rawMetadataKey: string(b)}
	}
	md := make(es.Metadata, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			md[k] = s
		} else {
			md[k] = string(v)
		}
	}
	for _, m := range mirrored {
		if v, ok := md[m.theirs]; ok && md[m.ours] == v {
			delete(md, m.theirs)
		}
	}
	return md
}

// record converts a recorded event of the store's namespace.
func (s *Store) record(e *esdb.RecordedEvent) es.Record {
	return es.Record{
		ID:         e.EventID,
		Stream:     strings.TrimPrefix(e.StreamID, s.ns),
		Version:    int64(e.EventNumber) + 1,
		Position:   es.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		Type:       e.EventType,
		Data:       e.Data,
		Metadata:   decodeMetadata(e.UserMetadata),
		RecordedAt: e.CreatedDate,
	}
}

// visible reports whether an event of $all belongs to the store's log:
// not a system event ($-prefixed stream or type, which includes the event
// ID index and link events) and in the store's namespace.
func (s *Store) visible(e *esdb.RecordedEvent) bool {
	return e != nil && !strings.HasPrefix(e.StreamID, "$") && !strings.HasPrefix(e.EventType, "$") &&
		strings.HasPrefix(e.StreamID, s.ns)
}

func (s *Store) readAllRaw(ctx context.Context, dir esdb.Direction, from esdb.AllPosition, count uint64) ([]esdb.ResolvedEvent, error) {
	rs, err := s.client_().ReadAll(ctx, esdb.ReadAllOptions{Direction: dir, From: from}, count)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rs.Close()
	var out []esdb.ResolvedEvent
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out = append(out, *e)
	}
}

// readStreamRaw reads a stream of the server. It returns nil and no error
// when the stream has no events.
func (s *Store) readStreamRaw(ctx context.Context, stream string, dir esdb.Direction, from esdb.StreamPosition, count uint64) ([]esdb.ResolvedEvent, error) {
	rs, err := s.client_().ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: dir, From: from}, count)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rs.Close()
	out := []esdb.ResolvedEvent{} // not nil: the stream exists
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if e, ok := esdb.FromError(err); !ok && e.Code() == esdb.ErrorCodeResourceNotFound {
			return nil, nil
		}
		if e, ok := esdb.FromError(err); !ok && e.Code() == esdb.ErrorCodeStreamDeleted {
			return nil, fmt.Errorf("%w: %w", es.ErrStreamDeleted, err)
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out = append(out, *e)
	}
}

// ReadStream implements [es.Store].
func (s *Store) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("esdbstore: read %s: %w", stream, err)
	}
	if stream == "" {
		return nil, &es.StreamNotFoundError{Stream: stream}
	}
	count := uint64(math.MaxInt64)
	if opts.Limit > 0 {
		count = uint64(opts.Limit)
	}
	var (
		dir  esdb.Direction
		from esdb.StreamPosition
	)
	switch opts.Direction {
	case es.Forwards:
		dir, from = esdb.Forwards, esdb.Revision(uint64(max(opts.From, 1)-1))
	case es.Backwards:
		dir, from = esdb.Backwards, esdb.End{}
		if opts.From > 0 {
			from = esdb.Revision(uint64(opts.From - 1))
		}
	default:
		return nil, fmt.Errorf("esdbstore: read %s: unknown direction %d", stream, opts.Direction)
	}
	evs, err := s.readStreamRaw(ctx, s.stream(stream), dir, from, count)
	if err != nil {
		return nil, fmt.Errorf("esdbstore: read %s: %w", stream, err)
	}
	if evs == nil {
		return nil, &es.StreamNotFoundError{Stream: stream}
	}
	out := make([]es.Record, len(evs))
	for i := range evs {
		out[i] = s.record(evs[i].Event)
	}
	return out, nil
}

// ReadAll implements [es.Store]. The server's $all holds system events and,
// with a namespace, other stores' events; ReadAll pages past them.
func (s *Store) ReadAll(ctx context.Context, after es.Position, limit int) ([]es.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("esdbstore: read all: %w", err)
	}
	if limit <= 0 {
		limit = es.BatchSizeDefault
	}
	page := uint64(limit + 1)
	cursor := esdb.Position{Commit: after.Commit, Prepare: after.Prepare}
	var from esdb.AllPosition = cursor
	if after.IsZero() {
		from = esdb.Start{}
	}
	var out []es.Record
	for {
		evs, err := s.readAllRaw(ctx, esdb.Forwards, from, page)
		if err != nil {
			return nil, fmt.Errorf("esdbstore: read all after %s: %w", after, err)
		}
		for _, e := range evs {
			p := e.Event.Position
			if !posBefore(cursor, p) {
				continue // reading forwards from a position includes it
			}
			cursor = p
			if s.visible(e.Event) {
				out = append(out, s.record(e.Event))
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if uint64(len(evs)) < page {
			return out, nil
		}
		from = cursor
	}
}
