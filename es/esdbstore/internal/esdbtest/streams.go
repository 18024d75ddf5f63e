package esdbtest

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

func (featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const svc = "event_store.client.streams.streams"
	var methods []*serverfeatures.SupportedMethod
	for _, m := range []string{"read", "append", "tombstone"} {
		methods = append(methods, &serverfeatures.SupportedMethod{ServiceName: svc, MethodName: m})
	}
	return &serverfeatures.SupportedMethods{Methods: methods, EventStoreServerVersion: Version}, nil
}

// streamsService is the Streams gRPC service. (The persistent subscriptions
// service also has Read and Delete methods; it would need a type of its own.)
type streamsService struct {
	streams.UnimplementedStreamsServer
	db *db
}

var empty = &shared.Empty{}

// streamDeleted returns the server's error for a tombstoned stream: the
// client reads the exception and stream name from the trailers.
func streamDeleted(ctx context.Context, stream string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", stream))
	return status.Errorf(codes.FailedPrecondition, "Event stream '%s' is deleted.", stream)
}

func toUUID(id *shared.UUID) (uuid.UUID, error) {
	if s := id.GetStructured(); s != nil {
		var u uuid.UUID
		for i := range 8 {
			u[i] = byte(uint64(s.MostSignificantBits) >> (56 - 8*i))
			u[8+i] = byte(uint64(s.LeastSignificantBits) >> (56 - 8*i))
		}
		return u, nil
	}
	return uuid.Parse(id.GetString_())
}

func fromUUID(u uuid.UUID, structured bool) *shared.UUID {
	if !structured {
		return &shared.UUID{Value: &shared.UUID_String_{String_: u.String()}}
	}
	var most, least uint64
	for i := range 8 {
		most = most<<8 | uint64(u[i])
		least = least<<8 | uint64(u[8+i])
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: int64(most), LeastSignificantBits: int64(least),
	}}}
}

// expected revisions, as the server encodes them internally.
const (
	expectAny          int64 = -2
	expectNoStream     int64 = -1
	expectStreamExists int64 = -4
)

func (s *streamsService) Append(srv streams.Streams_AppendServer) error {
	head, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := head.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first message of an append must carry its options")
	}
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	var expected int64
	switch r := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		expected = expectAny
	case *streams.AppendReq_Options_NoStream:
		expected = expectNoStream
	case *streams.AppendReq_Options_StreamExists:
		expected = expectStreamExists
	case *streams.AppendReq_Options_Revision:
		expected = int64(r.Revision)
	default:
		return status.Error(codes.InvalidArgument, "append without an expected stream revision")
	}
	var events []proposed
	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		m := msg.GetProposedMessage()
		if m == nil {
			return status.Error(codes.InvalidArgument, "expected a proposed message")
		}
		id, err := toUUID(m.GetId())
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "event id: %v", err)
		}
		typ, ok := m.GetMetadata()["type"]
		if !ok {
			return status.Error(codes.InvalidArgument, "event without a type")
		}
		ct, ok := m.GetMetadata()["content-type"]
		if !ok {
			return status.Error(codes.InvalidArgument, "event without a content-type")
		}
		events = append(events, proposed{id: id, eventType: typ, contentType: ct, data: m.GetData(), metadata: m.GetCustomMetadata()})
	}
	resp, err := s.db.append(srv.Context(), stream, expected, events)
	if err != nil {
		return err
	}
	return srv.SendAndClose(resp)
}

func (d *db) append(ctx context.Context, stream string, expected int64, events []proposed) (*streams.AppendResp, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.streams[stream]
	if st != nil && st.tombstoned {
		return nil, streamDeleted(ctx, stream)
	}
	cur := st.lastRevision()
	if len(events) == 0 {
		// The server accepts an empty write, which only checks the expected revision.
		if !allows(expected, cur) {
			return wrongExpectedVersion(expected, cur), nil
		}
		return success(cur, nil), nil
	}
	switch decision, first := d.check(stream, st, expected, events); decision {
	case commitOK:
	case commitIdempotent:
		last := d.log[st.log[first+len(events)-1]]
		// An idempotent write reports the events' last revision but no
		// position: nothing was written.
		return success(int64(last.revision), nil), nil
	default:
		return wrongExpectedVersion(expected, cur), nil
	}
	_, last := d.write(stream, events)
	return success(int64(d.log[last].revision), &d.log[last]), nil
}

type commitDecision int

const (
	commitOK commitDecision = iota
	commitIdempotent
	commitWrongExpectedVersion // also the server's "corrupted idempotency"
)

// check decides a write as the server's index writer does. For an
// idempotent write it also returns the revision of the first stored event.
func (d *db) check(stream string, st *streamState, expected int64, events []proposed) (commitDecision, int) {
	cur := st.lastRevision()
	// matchFrom reports whether the events are stored at revisions from, from+1, ….
	matchFrom := func(from int) commitDecision {
		for i, e := range events {
			if from+i >= len(st.log) || d.log[st.log[from+i]].id != e.id {
				// Past the first event, the server calls this corrupted
				// idempotency; the client sees a wrong expected version.
				return commitWrongExpectedVersion
			}
		}
		return commitIdempotent
	}
	switch {
	case expected == expectAny || expected == expectStreamExists:
		if expected == expectStreamExists && cur < 0 {
			return commitWrongExpectedVersion, 0
		}
		i, ok := d.recent[events[0].id]
		if !ok || d.log[i].stream != stream {
			return commitOK, 0
		}
		from := int(d.log[i].revision)
		return matchFrom(from), from
	case expected == cur:
		return commitOK, 0
	case expected < cur:
		from := int(expected + 1)
		return matchFrom(from), from
	default:
		return commitWrongExpectedVersion, 0
	}
}

func allows(expected, cur int64) bool {
	switch expected {
	case expectAny:
		return true
	case expectStreamExists:
		return cur >= 0
	}
	return expected == cur
}

func success(revision int64, last *record) *streams.AppendResp {
	ok := &streams.AppendResp_Success{}
	if revision < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: empty}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(revision)}
	}
	if last == nil {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: empty}
	} else {
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: last.position, PreparePosition: last.position,
		}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

func wrongExpectedVersion(expected, cur int64) *streams.AppendResp {
	w := &streams.AppendResp_WrongExpectedVersion{}
	if cur < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: empty}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: empty}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(cur)}
	}
	switch expected {
	case expectAny:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: empty}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: empty}
	case expectStreamExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: empty}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: empty}
	case expectNoStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: empty}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: uint64(expected)}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: uint64(expected)}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

func (s *streamsService) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	opts := req.GetOptions()
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	d := s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.streams[stream]
	if st != nil && st.tombstoned {
		return nil, streamDeleted(ctx, stream)
	}
	cur := st.lastRevision()
	expected := expectAny
	switch r := opts.GetExpectedStreamRevision().(type) {
	case *streams.TombstoneReq_Options_NoStream:
		expected = expectNoStream
	case *streams.TombstoneReq_Options_StreamExists:
		expected = expectStreamExists
	case *streams.TombstoneReq_Options_Revision:
		expected = int64(r.Revision)
	}
	if !allows(expected, cur) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "wrong-expected-version",
			"stream-name", stream, "expected-version", strconv.FormatInt(expected, 10), "actual-version", strconv.FormatInt(cur, 10)))
		return nil, status.Errorf(codes.FailedPrecondition, "Append failed due to WrongExpectedVersion. Stream: %s, Expected version: %d, Actual version: %d", stream, expected, cur)
	}
	_, last := d.write(stream, []proposed{{id: uuid.New(), eventType: "$streamDeleted", contentType: "application/octet-stream", data: []byte{}}})
	d.streams[stream].tombstoned = true
	pos := d.log[last].position
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

func (s *streamsService) Read(req *streams.ReadReq, srv streams.Streams_ReadServer) error {
	opts := req.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "read without options")
	}
	f, err := parseFilter(opts)
	if err != nil {
		return err
	}
	structured := opts.GetUuidOption().GetString_() == nil
	backwards := opts.GetReadDirection() == streams.ReadReq_Options_Backwards
	if so := opts.GetStream(); so != nil {
		if opts.GetSubscription() != nil {
			return status.Error(codes.Unimplemented, "esdbtest: stream subscriptions are not implemented")
		}
		return s.readStream(srv, so, backwards, opts.GetCount(), structured)
	}
	all := opts.GetAll()
	if all == nil {
		return status.Error(codes.InvalidArgument, "read of neither a stream nor $all")
	}
	if opts.GetSubscription() != nil {
		return s.subscribeAll(srv, all, f, structured)
	}
	return s.readAll(srv, all, f, backwards, opts.GetCount(), structured)
}

func parseFilter(opts *streams.ReadReq_Options) (*filter, error) {
	fo := opts.GetFilter()
	if fo == nil {
		return nil, nil
	}
	f := &filter{}
	expr := fo.GetStreamIdentifier()
	if expr == nil {
		expr, f.onType = fo.GetEventType(), true
	}
	f.prefixes = expr.GetPrefix()
	if r := expr.GetRegex(); r != "" {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter regex: %v", err)
		}
		f.re = re
	}
	return f, nil
}

func (d *db) readEvent(r *record, structured, all bool) *streams.ReadResp {
	ev := &streams.ReadResp_ReadEvent{Event: &streams.ReadResp_ReadEvent_RecordedEvent{
		Id:               fromUUID(r.id, structured),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
		StreamRevision:   r.revision,
		PreparePosition:  r.position,
		CommitPosition:   r.position,
		Metadata: map[string]string{
			"type":         r.eventType,
			"content-type": r.contentType,
			"created":      strconv.FormatInt(r.created, 10),
		},
		CustomMetadata: r.metadata,
		Data:           r.data,
	}}
	if all {
		ev.Position = &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.position}
	} else {
		ev.Position = &streams.ReadResp_ReadEvent_NoPosition{NoPosition: empty}
	}
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: ev}}
}

func (s *streamsService) readStream(srv streams.Streams_ReadServer, so *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64, structured bool) error {
	stream := string(so.GetStreamIdentifier().GetStreamName())
	d := s.db
	d.mu.Lock()
	st := d.streams[stream]
	if st != nil && st.tombstoned {
		d.mu.Unlock()
		return streamDeleted(srv.Context(), stream)
	}
	if st == nil || len(st.log) == 0 {
		d.mu.Unlock()
		return srv.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: so.GetStreamIdentifier(),
		}}})
	}
	n := uint64(len(st.log))
	var out []*streams.ReadResp
	switch {
	case !backwards:
		from := uint64(0)
		switch r := so.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = r.Revision
		case *streams.ReadReq_Options_StreamOptions_End:
			from = n
		}
		for rev := from; rev < n && uint64(len(out)) < count; rev++ {
			out = append(out, d.readEvent(&d.log[st.log[rev]], structured, false))
		}
	default:
		from := n - 1
		if r, ok := so.GetRevisionOption().(*streams.ReadReq_Options_StreamOptions_Revision); ok {
			// Reading backwards from past the end starts at the last event.
			from = min(r.Revision, n-1)
		} else if _, ok := so.GetRevisionOption().(*streams.ReadReq_Options_StreamOptions_Start); ok {
			from = 0
		}
		for rev := int64(from); rev >= 0 && uint64(len(out)) < count; rev-- {
			out = append(out, d.readEvent(&d.log[st.log[rev]], structured, false))
		}
	}
	d.mu.Unlock()
	for _, m := range out {
		if err := srv.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// searchAfter returns the index of the first record whose position is above
// pos (or at least pos, when inclusive).
func (d *db) searchAfter(pos uint64, inclusive bool) int {
	lo, hi := 0, len(d.log)
	for lo < hi {
		m := (lo + hi) / 2
		p := d.log[m].position
		if p > pos || (inclusive && p == pos) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

func (s *streamsService) readAll(srv streams.Streams_ReadServer, all *streams.ReadReq_Options_AllOptions, f *filter, backwards bool, count uint64, structured bool) error {
	d := s.db
	d.mu.Lock()
	var out []*streams.ReadResp
	if !backwards {
		i := 0
		switch o := all.GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Position:
			i = d.searchAfter(o.Position.GetCommitPosition(), true) // inclusive
		case *streams.ReadReq_Options_AllOptions_End:
			i = len(d.log)
		}
		for ; i < len(d.log) && uint64(len(out)) < count; i++ {
			if f.match(&d.log[i]) {
				out = append(out, d.readEvent(&d.log[i], structured, true))
			}
		}
	} else {
		i := len(d.log) - 1
		switch o := all.GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Position:
			i = d.searchAfter(o.Position.GetCommitPosition(), true) - 1 // exclusive
		case *streams.ReadReq_Options_AllOptions_Start:
			i = -1
		}
		for ; i >= 0 && uint64(len(out)) < count; i-- {
			if f.match(&d.log[i]) {
				out = append(out, d.readEvent(&d.log[i], structured, true))
			}
		}
	}
	d.mu.Unlock()
	for _, m := range out {
		if err := srv.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// subscribeAll serves a catch-up subscription to $all: a confirmation, the
// stored events after the start, a checkpoint and a caught-up message, then
// live events until the client goes away or the server stops.
func (s *streamsService) subscribeAll(srv streams.Streams_ReadServer, all *streams.ReadReq_Options_AllOptions, f *filter, structured bool) error {
	d := s.db
	ctx := srv.Context()
	d.mu.Lock()
	next := 0
	switch o := all.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Position:
		next = d.searchAfter(o.Position.GetCommitPosition(), false) // exclusive
	case *streams.ReadReq_Options_AllOptions_End:
		next = len(d.log)
	}
	if d.subscribed != nil {
		close(d.subscribed)
		d.subscribed = nil
	}
	d.mu.Unlock()
	if err := srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return err
	}
	const checkpointEvery = 32 // the default search window, in events scanned
	scanned, caughtUp := 0, false
	for {
		d.mu.Lock()
		var out []*streams.ReadResp
		for ; next < len(d.log) && len(out) < 256; next++ {
			scanned++
			r := &d.log[next]
			if f.match(r) {
				out = append(out, d.readEvent(r, structured, true))
			}
			if f != nil && scanned%checkpointEvery == 0 {
				out = append(out, checkpoint(r.position))
			}
		}
		changed := d.changed
		atEnd := next == len(d.log)
		var last uint64
		if next > 0 {
			last = d.log[next-1].position
		}
		d.mu.Unlock()
		if atEnd && !caughtUp {
			caughtUp = true
			if f != nil {
				out = append(out, checkpoint(last))
			}
			out = append(out, &streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}})
		}
		for _, m := range out {
			if err := srv.Send(m); err != nil {
				return err
			}
		}
		if !atEnd {
			continue
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

func checkpoint(pos uint64) *streams.ReadResp {
	return &streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: pos, PreparePosition: pos,
	}}}
}
