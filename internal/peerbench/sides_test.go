package peerbench_test

// The three sides of the comparison, behind one interface so that the
// benchmarks and the test that checks them run the same code:
//
//   - strata: es/pgstore (Append with an exact expected version, Import,
//     ReadAll in pages of 500 decoded with an es.Registry, Subscribe);
//   - raw: plain pgx on a plain table (bigserial key, bytea data,
//     (stream, version) unique);
//   - peer: github.com/hallgren/eventsourcing with its SQL event store
//     (aggregate.Save, and its global reader, the All fetcher, through a
//     projection).
//
// Every side turns an OrderPlaced value into JSON for each event it writes,
// as an application does (the peer cannot be handed encoded data), and
// decodes the JSON of each event it reads back into an OrderPlaced.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallgren/eventsourcing"
	"github.com/hallgren/eventsourcing/aggregate"
	"github.com/hallgren/eventsourcing/core"
	peersql "github.com/hallgren/eventsourcing/eventstore/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
)

// OrderPlaced is the event every side writes and reads: about 300 bytes of
// JSON, a typical domain event. Its Go type name is the peer's event type
// name ("reason").
type OrderPlaced struct {
	OrderID   string     `json:"order_id"`
	Customer  string     `json:"customer"`
	Currency  string     `json:"currency"`
	PlacedAt  string     `json:"placed_at"`
	Lines     []LineItem `json:"lines"`
	TotalCent int64      `json:"total_cents"`
}

// LineItem is a line of an OrderPlaced.
type LineItem struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	Cents     int64  `json:"cents"`
}

// newOrderPlaced returns the event of the i-th write: all events have the
// same shape and, give or take the digits of i, the same size.
func newOrderPlaced(stream string, version int64) OrderPlaced {
	return OrderPlaced{
		OrderID:  fmt.Sprintf("%s@%d", stream, version),
		Customer: "customer-1234",
		Currency: "EUR",
		PlacedAt: "2026-11-29T07:30:00Z",
		Lines: []LineItem{
			{ProductID: "product-17", Name: "Espresso machine", Quantity: 1, Cents: 34900},
			{ProductID: "product-42", Name: "Coffee beans, 1 kg", Quantity: 3, Cents: 1899},
		},
		TotalCent: 40597,
	}
}

const eventType = "OrderPlaced"

// metadata is each event's metadata: a correlation and a causation ID.
func metadata() map[string]any {
	return map[string]any{
		es.MetaCorrelationID: "0b7e4c1e-5b1a-4a57-9d9e-1f0c6f3c2b11",
		es.MetaCausationID:   "5d2f3e4a-8c7b-4b1a-9e6f-2a3b4c5d6e7f",
	}
}

// readEvent is an event as a side reads it back.
type readEvent struct {
	Stream  string
	Version int64
	Event   OrderPlaced
}

// side is one way of storing and reading the events.
type side interface {
	// append appends n events to stream, whose version is version before
	// the append, in one operation, and returns the position of the last
	// one in the side's log.
	append(ctx context.Context, stream string, version int64, n int) (es.Position, error)
	// importEvents writes n events to n/perStream new streams named
	// prefix-0, prefix-1, ..., perStream events each, in that order.
	importEvents(ctx context.Context, prefix string, n, perStream int) error
	// readAll reads the whole log in order and calls visit for each event.
	readAll(ctx context.Context, visit func(readEvent)) error
	// head returns the position of the last event in the log.
	head(ctx context.Context) (es.Position, error)
	// live reads the log after after as it grows, calling visit with each
	// event and its position, until ctx ends.
	live(ctx context.Context, after es.Position, visit func(readEvent, es.Position)) error
	// written is what a writer calls after each append: it wakes the
	// live reader where the side's API leaves that to the writer.
	written()
	// table is the quoted name of the table that holds the events.
	table() string
	// settle waits until the side's readers can see the first n events of
	// the log. strata's readers see an event once no transaction older
	// than the event's is running on the server (see es/pgstore), so any
	// other client's transaction may hold them back for a while; the
	// others' readers see a committed event at once.
	settle(ctx context.Context, n int) error
}

// settleMax bounds settle: what holds a reader back that long is a bug.
const settleMax = time.Minute

// newSides returns the three sides, each in a fresh schema of its own on
// srv (the peer's table is called events too, and its SQL names no schema:
// it finds its schema through search_path).
func newSides(tb testing.TB, srv *server) map[string]side {
	tb.Helper()
	return map[string]side{
		"strata": newStrataSide(tb, srv),
		"raw":    newRawSide(tb, srv),
		"peer":   newPeerSide(tb, srv),
	}
}

// sideNames is the order the sides run in.
var sideNames = []string{"strata", "raw", "peer"}

// --- strata ---

type strataSide struct {
	store  *pgstore.Store
	events string // quoted
	pool   *pgxpool.Pool
	reg    *es.Registry
	meta   es.Metadata
}

func newStrataSide(tb testing.TB, srv *server) *strataSide {
	tb.Helper()
	schema, cfg := srv.newSchema(tb, "strata", false)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	s := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if _, err := s.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	reg := es.NewRegistry()
	es.Register[OrderPlaced](reg, eventType)
	meta := es.Metadata{}
	for k, v := range metadata() {
		meta[k] = v.(string)
	}
	return &strataSide{store: s, events: pgx.Identifier{schema, "events"}.Sanitize(), pool: pool, reg: reg, meta: meta}
}

func (s *strataSide) encode(stream string, version int64) (es.EventData, error) {
	return s.reg.Encode(newOrderPlaced(stream, version), s.meta)
}

func (s *strataSide) append(ctx context.Context, stream string, version int64, n int) (es.Position, error) {
	evs := make([]es.EventData, n)
	for i := range evs {
		var err error
		if evs[i], err = s.encode(stream, version+int64(i)+1); err != nil {
			return es.Position{}, err
		}
	}
	res, err := s.store.Append(ctx, stream, es.Exact(version), evs...)
	return res.Position, err
}

func (s *strataSide) importEvents(ctx context.Context, prefix string, n, perStream int) error {
	res, err := s.store.Import(ctx, func(yield func(pgstore.ImportEvent, error) bool) {
		for i := range n {
			stream := fmt.Sprintf("%s-%d", prefix, i/perStream)
			ev, err := s.encode(stream, int64(i%perStream+1))
			if !yield(pgstore.ImportEvent{Stream: stream, Event: ev}, err) || err != nil {
				return
			}
		}
	})
	if err == nil && res.Events != n {
		err = fmt.Errorf("imported %d events, want %d", res.Events, n)
	}
	return err
}

// readPage is the page size of every side that reads in pages.
const readPage = 500

func (s *strataSide) decode(r es.Record) (readEvent, error) {
	v, err := s.reg.Decode(r)
	if err != nil {
		return readEvent{}, err
	}
	o, ok := v.(OrderPlaced)
	if !ok {
		return readEvent{}, fmt.Errorf("decoded %s@%d into %T, want OrderPlaced", r.Stream, r.Version, v)
	}
	return readEvent{Stream: r.Stream, Version: r.Version, Event: o}, nil
}

func (s *strataSide) readAll(ctx context.Context, visit func(readEvent)) error {
	for after := es.Start; ; {
		recs, err := s.store.ReadAll(ctx, after, readPage)
		if err != nil || len(recs) == 0 {
			return err
		}
		for _, r := range recs {
			ev, err := s.decode(r)
			if err != nil {
				return err
			}
			visit(ev)
		}
		after = recs[len(recs)-1].Position
	}
}

func (s *strataSide) head(ctx context.Context) (es.Position, error) { return s.store.Head(ctx) }

func (s *strataSide) live(ctx context.Context, after es.Position, visit func(readEvent, es.Position)) error {
	for recs, err := range s.store.Subscribe(ctx, es.SubscribeOptions{After: after, BatchSize: readPage}) {
		if err != nil {
			return err
		}
		for _, r := range recs {
			ev, err := s.decode(r)
			if err != nil {
				return err
			}
			visit(ev, r.Position)
		}
	}
	return nil
}

// written does nothing: an append wakes subscribers itself.
func (s *strataSide) written() {}

func (s *strataSide) table() string { return s.events }

// settle subscribes from the start of the log until it has seen n events:
// a subscription wakes when events become visible.
func (s *strataSide) settle(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, settleMax)
	defer cancel()
	seen := 0
	for recs, err := range s.store.Subscribe(ctx, es.SubscribeOptions{BatchSize: readPage}) {
		if err != nil {
			return fmt.Errorf("wait until %d events are visible: %w", n, err)
		}
		if seen += len(recs); seen >= n {
			return nil
		}
	}
	return fmt.Errorf("wait until %d events are visible: %d are after %s: %w", n, seen, settleMax, ctx.Err())
}

// --- raw ---

// rawTable is the plain table of the raw side.
const rawTable = `CREATE TABLE %s (
	position bigserial PRIMARY KEY,
	stream text NOT NULL,
	version bigint NOT NULL,
	type text NOT NULL,
	data bytea NOT NULL,
	metadata bytea,
	UNIQUE (stream, version)
)`

type rawSide struct {
	pool   *pgxpool.Pool
	schema string
	events string // quoted
	kick   chan struct{}
}

func newRawSide(tb testing.TB, srv *server) *rawSide {
	tb.Helper()
	schema, cfg := srv.newSchema(tb, "raw", false)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	table := pgx.Identifier{schema, "raw_events"}.Sanitize()
	if _, err := pool.Exec(context.Background(), fmt.Sprintf(rawTable, table)); err != nil {
		tb.Fatal(err)
	}
	return &rawSide{pool: pool, schema: schema, events: table, kick: make(chan struct{}, 1)}
}

// row encodes the event of stream at version: data and metadata.
func (s *rawSide) row(stream string, version int64) ([]byte, []byte, error) {
	data, err := json.Marshal(newOrderPlaced(stream, version))
	if err != nil {
		return nil, nil, err
	}
	meta, err := json.Marshal(metadata())
	return data, meta, err
}

func (s *rawSide) append(ctx context.Context, stream string, version int64, n int) (es.Position, error) {
	var sql strings.Builder
	sql.WriteString("INSERT INTO " + s.events + " (stream, version, type, data, metadata) VALUES ")
	args := make([]any, 0, 5*n)
	for i := range n {
		if i > 0 {
			sql.WriteString(", ")
		}
		fmt.Fprintf(&sql, "($%d, $%d, $%d, $%d, $%d)", 5*i+1, 5*i+2, 5*i+3, 5*i+4, 5*i+5)
		v := version + int64(i) + 1
		data, meta, err := s.row(stream, v)
		if err != nil {
			return es.Position{}, err
		}
		args = append(args, stream, v, eventType, data, meta)
	}
	sql.WriteString(" RETURNING position")
	// One statement in autocommit: the last row's position is the largest.
	rows, err := s.pool.Query(ctx, sql.String(), args...)
	if err != nil {
		return es.Position{}, err
	}
	var last int64
	_, err = pgx.ForEachRow(rows, []any{&last}, func() error { return nil })
	return es.Position{Prepare: uint64(last)}, err
}

func (s *rawSide) importEvents(ctx context.Context, prefix string, n, perStream int) error {
	i := 0
	row := make([]any, 5)
	copied, err := s.pool.CopyFrom(ctx, pgx.Identifier{s.schema, "raw_events"},
		[]string{"stream", "version", "type", "data", "metadata"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			stream, v := fmt.Sprintf("%s-%d", prefix, i/perStream), int64(i%perStream+1)
			data, meta, err := s.row(stream, v)
			if err != nil {
				return nil, err
			}
			row[0], row[1], row[2], row[3], row[4] = stream, v, eventType, data, meta
			i++
			return row, nil
		}))
	if err == nil && copied != int64(n) {
		err = fmt.Errorf("copied %d events, want %d", copied, n)
	}
	return err
}

// page reads the events after position after, at most readPage, and
// returns the position of the last one (after when there was none).
func (s *rawSide) page(ctx context.Context, after int64, visit func(readEvent, es.Position)) (int64, int, error) {
	rows, err := s.pool.Query(ctx, "SELECT position, stream, version, type, data, metadata FROM "+s.events+
		" WHERE position > $1 ORDER BY position LIMIT $2", after, readPage)
	if err != nil {
		return after, 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			ev         readEvent
			typ        string
			data, meta []byte
		)
		if err := rows.Scan(&after, &ev.Stream, &ev.Version, &typ, &data, &meta); err != nil {
			return after, n, err
		}
		if err := json.Unmarshal(data, &ev.Event); err != nil {
			return after, n, fmt.Errorf("decode %s@%d: %w", ev.Stream, ev.Version, err)
		}
		visit(ev, es.Position{Prepare: uint64(after)})
		n++
	}
	return after, n, rows.Err()
}

func (s *rawSide) readAll(ctx context.Context, visit func(readEvent)) error {
	for after := int64(0); ; {
		var (
			n   int
			err error
		)
		after, n, err = s.page(ctx, after, func(ev readEvent, _ es.Position) { visit(ev) })
		if err != nil || n == 0 {
			return err
		}
	}
}

func (s *rawSide) head(ctx context.Context) (es.Position, error) {
	var last int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM "+s.events).Scan(&last)
	return es.Position{Prepare: uint64(last)}, err
}

// livePollDefault is how often the raw and the peer live readers read when
// no writer has woken them.
const livePollDefault = 100 * time.Millisecond

// live is the naive reader: "position > the last one read", woken by the
// writers and polling every livePollDefault.
func (s *rawSide) live(ctx context.Context, after es.Position, visit func(readEvent, es.Position)) error {
	cursor := int64(after.Prepare)
	tick := time.NewTicker(livePollDefault)
	defer tick.Stop()
	for {
		var (
			n   int
			err error
		)
		cursor, n, err = s.page(ctx, cursor, visit)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n == readPage {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-tick.C:
		}
	}
}

func (s *rawSide) table() string { return s.events }

func (s *rawSide) settle(context.Context, int) error { return nil }

func (s *rawSide) written() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// --- peer ---

// Order is the peer's aggregate: one event type, no state.
type Order struct {
	aggregate.Root
}

// Transition implements the peer's aggregate.
func (o *Order) Transition(eventsourcing.Event) {}

// Register implements the peer's aggregate.
func (o *Order) Register(r aggregate.RegisterFunc) { r(&OrderPlaced{}) }

// The peer keeps aggregates and event types in one global register.
var registerPeer = sync.OnceFunc(func() { aggregate.Register(&Order{}) })

type peerSide struct {
	db     *sql.DB
	store  *peersql.Postgres
	events string // quoted

	mu   sync.Mutex
	aggs map[string]*Order // the aggregates written to, as an application holds them
	proj *eventsourcing.Projection
}

func newPeerSide(tb testing.TB, srv *server) *peerSide {
	tb.Helper()
	registerPeer()
	schema, cfg := srv.newSchema(tb, "peer", true)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	db.SetMaxOpenConns(int(cfg.MaxConns))
	db.SetMaxIdleConns(int(cfg.MaxConns))
	tb.Cleanup(func() { db.Close() })
	store, err := peersql.NewPostgres(db)
	if err != nil {
		tb.Fatal(err)
	}
	return &peerSide{db: db, store: store, events: pgx.Identifier{schema, "events"}.Sanitize(), aggs: map[string]*Order{}}
}

// order returns the aggregate of stream, which must be at version.
func (s *peerSide) order(stream string, version int64) (*Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.aggs[stream]
	if o == nil {
		o = &Order{}
		if err := o.SetID(stream); err != nil {
			return nil, err
		}
		s.aggs[stream] = o
	}
	if got := int64(o.Version()); got != version {
		return nil, fmt.Errorf("peer aggregate %s is at version %d, want %d", stream, got, version)
	}
	return o, nil
}

func (s *peerSide) append(_ context.Context, stream string, version int64, n int) (es.Position, error) {
	o, err := s.order(stream, version)
	if err != nil {
		return es.Position{}, err
	}
	meta := metadata()
	for i := range n {
		ev := newOrderPlaced(stream, version+int64(i)+1)
		aggregate.TrackChangeWithMetadata(o, &ev, meta)
	}
	if err := aggregate.Save(s.store, o); err != nil {
		return es.Position{}, err
	}
	return es.Position{Prepare: uint64(o.GlobalVersion())}, nil
}

// importEvents saves each stream's events in one Save: the peer has no
// bulk import.
func (s *peerSide) importEvents(ctx context.Context, prefix string, n, perStream int) error {
	for i := 0; i < n; i += perStream {
		if _, err := s.append(ctx, fmt.Sprintf("%s-%d", prefix, i/perStream), 0, min(perStream, n-i)); err != nil {
			return err
		}
	}
	return nil
}

func peerEvent(e eventsourcing.Event) (readEvent, error) {
	o, ok := e.Data().(*OrderPlaced)
	if !ok {
		return readEvent{}, fmt.Errorf("peer event %s@%d has data %T, want *OrderPlaced", e.AggregateID(), e.Version(), e.Data())
	}
	return readEvent{Stream: e.AggregateID(), Version: int64(e.Version()), Event: *o}, nil
}

// readAll runs a projection on the peer's global reader (All) to the end of
// the log.
func (s *peerSide) readAll(ctx context.Context, visit func(readEvent)) error {
	p := eventsourcing.NewProjection(s.store.All(0), func(e eventsourcing.Event) error {
		ev, err := peerEvent(e)
		if err == nil {
			visit(ev)
		}
		return err
	})
	return p.RunToEnd(ctx).Error
}

func (s *peerSide) head(ctx context.Context) (es.Position, error) {
	var last int64
	err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM events").Scan(&last)
	return es.Position{Prepare: uint64(last)}, err
}

// live runs a projection on the global reader with Run, which reads to the
// end, then waits for a trigger or the pace; writers trigger it
// (TriggerAsync) after each Save, as the peer's README suggests for
// reading soon after writing.
func (s *peerSide) live(ctx context.Context, after es.Position, visit func(readEvent, es.Position)) error {
	p := eventsourcing.NewProjection(s.store.All(core.Version(after.Prepare)+1), func(e eventsourcing.Event) error {
		ev, err := peerEvent(e)
		if err == nil {
			visit(ev, es.Position{Prepare: uint64(e.GlobalVersion())})
		}
		return err
	})
	s.mu.Lock()
	s.proj = p
	s.mu.Unlock()
	if err := p.Run(ctx, livePollDefault); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (s *peerSide) table() string { return s.events }

func (s *peerSide) settle(context.Context, int) error { return nil }

func (s *peerSide) written() {
	s.mu.Lock()
	p := s.proj
	s.mu.Unlock()
	if p != nil {
		p.TriggerAsync()
	}
}
