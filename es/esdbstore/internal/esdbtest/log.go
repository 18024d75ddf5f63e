package esdbtest

import (
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// recordSize is the fixed part of the room a record takes in the log. Like
// the real server's transaction file offsets, positions grow by the size of
// each record, so they are far apart and not consecutive.
const recordSize = 128

// firstPosition is where the log starts. The real server writes its own
// records (epochs, chunk headers) first, so the first event is never at 0.
const firstPosition = 4096

type record struct {
	id          uuid.UUID
	stream      string
	revision    uint64
	position    uint64 // commit and prepare position: every append commits its own prepares
	eventType   string
	contentType string
	created     int64 // .NET ticks since the Unix epoch, as the server sends them
	data        []byte
	metadata    []byte
}

type streamState struct {
	log        []int // indexes into db.log, in revision order
	tombstoned bool
}

// db is the server's state. It outlives the gRPC server, so that a restart
// keeps the data.
type db struct {
	mu      sync.Mutex
	log     []record
	streams map[string]*streamState
	// recent maps an event ID to the log index of the last event written
	// with it, like the server's bounded cache of recently committed IDs that
	// its idempotency check consults.
	recent  map[uuid.UUID]int
	next    uint64
	changed chan struct{} // closed and replaced by every write
	// subscribed is closed (and set to nil) when a subscription is confirmed.
	subscribed chan struct{}
}

func newDB() *db {
	d := &db{
		streams: make(map[string]*streamState),
		recent:  make(map[uuid.UUID]int),
		next:    firstPosition,
		changed: make(chan struct{}),
	}
	// A real node writes system events as it starts; readers must skip them.
	d.write("$settings", []proposed{{id: uuid.New(), eventType: "$settings", contentType: "application/json", data: []byte(`{}`)}})
	d.write("$users", []proposed{{id: uuid.New(), eventType: "$UserCreated", contentType: "application/json", data: []byte(`{"loginName":"admin"}`)}})
	return d
}

type proposed struct {
	id          uuid.UUID
	eventType   string
	contentType string
	data        []byte
	metadata    []byte
}

// write appends events to stream. The caller holds d.mu or owns d.
func (d *db) write(stream string, events []proposed) (first, last int) {
	st := d.streams[stream]
	if st == nil {
		st = &streamState{}
		d.streams[stream] = st
	}
	created := time.Now().UnixNano() / 100
	first = len(d.log)
	for _, e := range events {
		n := len(d.log)
		d.log = append(d.log, record{
			id: e.id, stream: stream, revision: uint64(len(st.log)), position: d.next,
			eventType: e.eventType, contentType: e.contentType, created: created,
			data: e.data, metadata: e.metadata,
		})
		d.next += recordSize + uint64(len(e.data)+len(e.metadata))
		st.log = append(st.log, n)
		d.recent[e.id] = n
	}
	close(d.changed)
	d.changed = make(chan struct{})
	return first, len(d.log) - 1
}

// lastRevision returns the revision of the stream's last event, or -1 when
// the stream has none.
func (st *streamState) lastRevision() int64 {
	if st == nil {
		return -1
	}
	return int64(len(st.log)) - 1
}

// filter is a server-side $all filter: on stream names or event types, by
// prefixes or a regular expression.
type filter struct {
	onType   bool
	prefixes []string
	re       *regexp.Regexp
}

func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	s := r.stream
	if f.onType {
		s = r.eventType
	}
	if f.re != nil {
		return f.re.MatchString(s)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
