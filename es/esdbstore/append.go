package esdbstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/es"
)

// The event ID index: one stream per caller-chosen event ID, holding one
// event that names the stream the ID belongs to. Its event type starts with
// $, so the store's log and subscriptions skip it.
const (
	idStreamPrefix = "strata-eventid-"
	idEventType    = "$strata.EventID"
	idWriters      = 16 // index writes in flight per append
)

// Append implements [es.Store].
//
// It validates with [es.ValidateAppend], checks the sizes of [Config] (see
// [Config.MaxAppendSize]), and also refuses stream IDs and
// event types that start with $, which EventStoreDB reserves for system
// streams and events (the store's log leaves them out). Unless
// [Config.DisableIDIndex] is set, it then records each caller-chosen event
// ID in the ID index; when an ID is already recorded for another stream the
// append fails with a [*es.DuplicateEventIDError], and when it is recorded
// for this stream the stream is read to tell a retry (which returns the
// original result) from a duplicate. Finally it appends with the expected
// version mapped to the server's expected revision (version - 1).
func (s *Store) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return es.AppendResult{}, fmt.Errorf("esdbstore: append to %s: %w", stream, err)
	}
	if err := es.ValidateAppend(stream, events); err != nil {
		return es.AppendResult{}, err
	}
	if err := s.cfg.limits().Check(stream, events); err != nil {
		return es.AppendResult{}, err
	}
	if strings.HasPrefix(stream, "$") {
		return es.AppendResult{}, &es.InvalidEventError{Stream: stream, Index: -1, Reason: "stream ids starting with $ name EventStoreDB system streams"}
	}
	data := make([]esdb.EventData, len(events))
	var chosen []uuid.UUID
	for i, e := range events {
		if strings.HasPrefix(e.Type, "$") {
			return es.AppendResult{}, &es.InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "event types starting with $ name EventStoreDB system events"}
		}
		md, err := encodeMetadata(e.Metadata)
		if err != nil {
			return es.AppendResult{}, &es.InvalidEventError{Stream: stream, Index: i, Type: e.Type, Reason: "metadata: " + err.Error()}
		}
		id := e.ID
		if id == uuid.Nil {
			if id, err = uuid.NewV7(); err != nil {
				return es.AppendResult{}, fmt.Errorf("esdbstore: append to %s: new event id: %w", stream, err)
			}
		} else {
			chosen = append(chosen, id)
		}
		data[i] = esdb.EventData{EventID: id, EventType: e.Type, ContentType: esdb.ContentTypeJson, Data: e.Data, Metadata: md}
	}
	if v, exact := expected.Version(); exact && v < 0 {
		return es.AppendResult{}, s.conflict(ctx, stream, expected, nil)
	}

	if !s.cfg.DisableIDIndex && len(chosen) > 0 {
		seen, err := s.index(ctx, stream, chosen)
		if err != nil {
			return es.AppendResult{}, err
		}
		if seen {
			res, ok, err := s.retried(ctx, stream, expected, data)
			if ok || err != nil {
				return res, err
			}
		}
	}

	res, err := s.client_().AppendToStream(ctx, s.stream(stream), esdb.AppendToStreamOptions{ExpectedRevision: revision(expected)}, data...)
	if err != nil {
		if e, ok := esdb.FromError(err); !ok {
			switch e.Code() {
			case esdb.ErrorCodeWrongExpectedVersion:
				return es.AppendResult{}, s.conflict(ctx, stream, expected, e)
			case esdb.ErrorCodeStreamDeleted:
				return es.AppendResult{}, fmt.Errorf("esdbstore: append to %s: %w: %w", stream, es.ErrStreamDeleted, err)
			}
		}
		return es.AppendResult{}, fmt.Errorf("esdbstore: append to %s: %w", stream, s.fail(ctx, err))
	}
	// The client reports the revision of the last event written (or, for an
	// idempotent write, of the last of the events already stored).
	out := es.AppendResult{Stream: stream, Version: int64(res.NextExpectedVersion) + 1, Position: es.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}}
	if out.Position.IsZero() {
		// An idempotent write reports no position: read it.
		evs, err := s.readStreamRaw(ctx, s.stream(stream), esdb.Forwards, esdb.Revision(res.NextExpectedVersion), 1)
		if err != nil || len(evs) == 0 {
			return es.AppendResult{}, fmt.Errorf("esdbstore: append to %s: the server reported an idempotent write but its last event cannot be read: %w", stream, err)
		}
		out.Position = s.record(evs[0].Event).Position
	}
	return out, nil
}

func revision(e es.ExpectedVersion) esdb.ExpectedRevision {
	switch {
	case e.IsAny():
		return esdb.Any{}
	case e.IsStreamExists():
		return esdb.StreamExists{}
	}
	v, _ := e.Version()
	if v == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(uint64(v - 1))
}

// gotRevision finds the stream's revision in the client's wrong expected
// version message: "expecting 'x' but got 'y'".
var gotRevision = regexp.MustCompile(`but got '([^']*)'`)

// conflict returns the version conflict for an append that the server
// refused, with the stream's version taken from the server's answer or,
// failing that, read.
func (s *Store) conflict(ctx context.Context, stream string, expected es.ExpectedVersion, refusal *esdb.Error) error {
	if refusal != nil && refusal.Err() != nil {
		if m := gotRevision.FindStringSubmatch(refusal.Err().Error()); m != nil {
			if m[1] == "no_stream" {
				return &es.VersionConflictError{Stream: stream, Expected: expected, Actual: 0}
			}
			if r, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				return &es.VersionConflictError{Stream: stream, Expected: expected, Actual: r + 1}
			}
		}
	}
	evs, err := s.readStreamRaw(ctx, s.stream(stream), esdb.Backwards, esdb.End{}, 1)
	if err != nil {
		return fmt.Errorf("esdbstore: append to %s: wrong expected version %s, and reading the stream's version failed: %w", stream, expected, err)
	}
	actual := int64(0)
	if len(evs) > 0 {
		actual = int64(evs[0].Event.EventNumber) + 1
	}
	return &es.VersionConflictError{Stream: stream, Expected: expected, Actual: actual}
}

// index records ids in the event ID index as belonging to stream. It
// reports whether some were recorded for stream already, and fails with a
// [*es.DuplicateEventIDError] when one belongs to another stream.
func (s *Store) index(ctx context.Context, stream string, ids []uuid.UUID) (seen bool, err error) {
	type entry struct {
		Stream string `json:"stream"`
	}
	body, err := json.Marshal(entry{Stream: stream})
	if err != nil {
		return false, err
	}
	owner := make([]string, len(ids))
	fresh := make([]bool, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(idWriters)
	for i, id := range ids {
		g.Go(func() error {
			idStream := s.stream(idStreamPrefix + id.String())
			// A fresh event ID: with the indexed ID itself, the server would
			// take a second entry for another stream as a retry of the first.
			_, err := s.client_().AppendToStream(gctx, idStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}},
				esdb.EventData{EventType: idEventType, ContentType: esdb.ContentTypeJson, Data: body})
			if e, ok := esdb.FromError(err); ok {
				owner[i], fresh[i] = stream, true
				return nil
			} else if e.Code() != esdb.ErrorCodeWrongExpectedVersion {
				return s.fail(gctx, err)
			}
			evs, err := s.readStreamRaw(gctx, idStream, esdb.Forwards, esdb.Start{}, 1)
			if err != nil {
				return err
			}
			var got entry
			if len(evs) == 0 || json.Unmarshal(evs[0].Event.Data, &got) != nil {
				return fmt.Errorf("event id index stream %s holds no readable entry", idStream)
			}
			owner[i] = got.Stream
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return false, fmt.Errorf("esdbstore: append to %s: event id index: %w", stream, err)
	}
	for i, o := range owner {
		if o != stream {
			return false, &es.DuplicateEventIDError{Stream: stream, ID: ids[i]}
		}
		// An ID indexed before this call may be stored in the stream: by an
		// earlier append, or not, if that append failed after indexing.
		seen = seen || !fresh[i]
	}
	return seen, nil
}

// retried reports whether events repeat an earlier append to stream, as
// memstore defines it: all IDs stored consecutively in the same order, at
// the place an exact expected version names. It returns that append's
// result. When some IDs are stored but the append is not a retry it fails
// with a [*es.DuplicateEventIDError]; when none is stored (an earlier
// attempt failed after indexing them) it returns ok false and no error.
func (s *Store) retried(ctx context.Context, stream string, expected es.ExpectedVersion, events []esdb.EventData) (es.AppendResult, bool, error) {
	evs, err := s.readStreamRaw(ctx, s.stream(stream), esdb.Forwards, esdb.Start{}, math.MaxInt64)
	if err != nil {
		return es.AppendResult{}, false, fmt.Errorf("esdbstore: append to %s: look for a retried append: %w", stream, err)
	}
	at := make(map[uuid.UUID]int, len(evs))
	for i, e := range evs {
		at[e.Event.EventID] = i
	}
	var stored []uuid.UUID
	for _, e := range events {
		if _, ok := at[e.EventID]; ok {
			stored = append(stored, e.EventID)
		}
	}
	switch len(stored) {
	case 0:
		return es.AppendResult{}, false, nil
	case len(events):
	default:
		return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: stored[0]}
	}
	start := at[events[0].EventID]
	if v, exact := expected.Version(); exact && int64(start) != v {
		return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: events[0].EventID}
	}
	if start+len(events) > len(evs) {
		return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: events[0].EventID}
	}
	for i, e := range events {
		if evs[start+i].Event.EventID != e.EventID {
			return es.AppendResult{}, false, &es.DuplicateEventIDError{Stream: stream, ID: e.EventID}
		}
	}
	last := s.record(evs[start+len(events)-1].Event)
	return es.AppendResult{Stream: stream, Version: last.Version, Position: last.Position}, true, nil
}
