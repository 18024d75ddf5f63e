package esdbstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stratadev/strata/es"
)

// Defaults of [Config].
const (
	ReconnectMinDefault     = 100 * time.Millisecond
	ReconnectMaxDefault     = 5 * time.Second
	ReconnectTimeoutDefault = time.Minute
	// MaxAppendSizeDefault is just under the server's default
	// --max-append-size of 1 MiB (1,048,576 bytes), which counts the bytes
	// of an append's events a little differently from [es.EventSize]
	// (escapes in metadata, for one): the 32 KiB between them keep an
	// append that passes the store's check from being refused by a server
	// with the default setting.
	MaxAppendSizeDefault = 1<<20 - 32<<10
	// MaxEventSizeDefault is MaxAppendSizeDefault: one event can be as
	// large as an append.
	MaxEventSizeDefault = MaxAppendSizeDefault
)

// Config configures a [Store]. Only ConnectionString is required.
type Config struct {
	// ConnectionString names the server: esdb://, esdb+discover://,
	// kurrentdb:// or kurrentdb+discover:// (kurrent:// and kdb:// too),
	// with the client's usual settings (tls, tlsVerifyCert, credentials,
	// node preference…). Required.
	ConnectionString string
	// Namespace, when set, scopes the store to the streams whose names start
	// with it: stream IDs are stored as Namespace+stream, and the global log
	// of the store holds only the namespace's events. It lets tests and
	// tenants share one server. Reads of the log then filter on the client
	// (ReadAll, Head) or by stream prefix on the server (Subscribe). Defaults
	// to "": every non-system stream.
	Namespace string
	// DisableIDIndex turns off the event ID index (see the package
	// documentation): appends then cost one write instead of one plus one per
	// caller-chosen event ID, and the server's own idempotency rules apply,
	// which accept an ID that is already stored in another stream or at
	// another place. Defaults to false: IDs are unique across the store.
	DisableIDIndex bool
	// ReconnectMin is the first wait before a dropped subscription
	// re-subscribes; each failed attempt doubles it. Defaults to 100ms.
	ReconnectMin time.Duration
	// ReconnectMax caps the wait between attempts. Defaults to 5s.
	ReconnectMax time.Duration
	// ReconnectTimeout is how long Subscribe keeps trying to re-subscribe
	// before it yields the error. Defaults to one minute.
	ReconnectTimeout time.Duration
	// Logger receives reconnects and the client's own warnings and errors.
	// Defaults to slog.Default().
	Logger *slog.Logger
	// MaxEventSize is the largest event an append may carry, in bytes as
	// [es.EventSize] measures them; a larger one is refused with an
	// [*es.InvalidEventError] before anything is sent. Defaults to
	// MaxEventSizeDefault, 1 MiB less 32 KiB.
	MaxEventSize int
	// MaxAppendSize is the most bytes one append may carry, all its events
	// together. The server refuses larger appends itself (its
	// --max-append-size, 1 MiB by default), with an error that names no
	// event; set this to a little less than the server's setting. Defaults
	// to MaxAppendSizeDefault, 1 MiB less 32 KiB.
	MaxAppendSize int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New("esdbstore: Config.ConnectionString is empty"))
	} else if _, err := esdbURL(c.ConnectionString); err != nil {
		errs = append(errs, err)
	}
	if strings.HasPrefix(c.Namespace, "$") {
		errs = append(errs, fmt.Errorf("esdbstore: Config.Namespace %q starts with $, which names system streams", c.Namespace))
	}
	// In field order, so that the joined error reads the same every time.
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"ReconnectMin", c.ReconnectMin}, {"ReconnectMax", c.ReconnectMax}, {"ReconnectTimeout", c.ReconnectTimeout}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("esdbstore: Config.%s is %v; want 0 (default) or more", f.name, f.d))
		}
	}
	if err := c.limits().Validate("esdbstore: Config"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) limits() es.SizeLimits {
	return es.SizeLimits{MaxEventSize: c.MaxEventSize, MaxAppendSize: c.MaxAppendSize}
}

func (c Config) withDefaults() Config {
	c.ReconnectMin = cmp.Or(c.ReconnectMin, ReconnectMinDefault)
	c.ReconnectMax = max(cmp.Or(c.ReconnectMax, ReconnectMaxDefault), c.ReconnectMin)
	c.ReconnectTimeout = cmp.Or(c.ReconnectTimeout, ReconnectTimeoutDefault)
	c.MaxEventSize = cmp.Or(c.MaxEventSize, MaxEventSizeDefault)
	c.MaxAppendSize = cmp.Or(c.MaxAppendSize, MaxAppendSizeDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// esdbURL rewrites the KurrentDB schemes to the ones the v4 client parses.
func esdbURL(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", errors.New("esdbstore: Config.ConnectionString has no scheme; want esdb:// or kurrentdb://")
	}
	base, discover := strings.CutSuffix(strings.ToLower(scheme), "+discover")
	switch base {
	case "esdb", "kurrentdb", "kurrent", "kdb":
	default:
		return "", fmt.Errorf("esdbstore: Config.ConnectionString has scheme %q; want esdb, kurrentdb, kurrent or kdb, optionally +discover", scheme)
	}
	if discover {
		return "esdb+discover://" + rest, nil
	}
	return "esdb://" + rest, nil
}

// Store is an [es.Store] on EventStoreDB or KurrentDB. It owns its client:
// call [Store.Close] when done. A Store is safe for concurrent use.
type Store struct {
	cfg    Config
	client *esdb.Configuration
	ns     string

	mu     sync.Mutex
	conn   *esdb.Client
	closed bool
}

var _ es.Store = (*Store)(nil)

// Open connects to the server that cfg names and checks that it answers a
// read of $all, so that a wrong address or an unavailable server fails here,
// within about a second with the client's default discovery settings, and
// not at the first append.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, _ := esdbURL(cfg.ConnectionString)
	conf, err := esdb.ParseConnectionString(u)
	if err != nil {
		return nil, fmt.Errorf("esdbstore: parse Config.ConnectionString: %w", err)
	}
	logger := cfg.Logger
	conf.Logger = func(level esdb.LogLevel, format string, args ...any) {
		// The client logs every dropped call as an error; the store
		// reports what it does about them itself.
		lvl := slog.LevelDebug
		if level == esdb.LogWarn || level == esdb.LogError {
			lvl = slog.LevelDebug + 2
		}
		logger.Log(context.Background(), lvl, "esdbstore: client: "+fmt.Sprintf(format, args...))
	}
	s := &Store{cfg: cfg, client: conf, ns: cfg.Namespace}
	if s.conn, err = esdb.NewClient(conf); err != nil {
		return nil, fmt.Errorf("esdbstore: %w", err)
	}
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("esdbstore: connect to %s: %w", s.address(), err)
	}
	return s, nil
}

func (s *Store) address() string {
	if len(s.client.GossipSeeds) > 0 {
		var seeds []string
		for _, g := range s.client.GossipSeeds {
			seeds = append(seeds, g.String())
		}
		return strings.Join(seeds, ",")
	}
	return s.client.Address
}

func (s *Store) probe(ctx context.Context) error {
	rs, err := s.client_().ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return s.fail(ctx, err)
	}
	defer rs.Close()
	if _, err := rs.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return s.fail(ctx, err)
	}
	return nil
}

// Client returns the client the store uses now, for what the [es.Store]
// interface does not cover (stream metadata, deletion, persistent
// subscriptions). The store replaces its client after the client gives up
// reconnecting, so do not keep the result.
func (s *Store) Client() *esdb.Client { return s.client_() }

func (s *Store) client_() *esdb.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Close closes the client. Subscriptions must have ended before.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.conn.Close()
}

// fail turns a client error into the store's error: the context's error when
// ctx has ended, and a fresh client when the old one gave up reconnecting
// (the v4 client closes itself for good when discovery fails).
func (s *Store) fail(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%w)", ctxErr, err)
	}
	if e, ok := esdb.FromError(err); !ok && e.Code() == esdb.ErrorCodeConnectionClosed {
		s.mu.Lock()
		if !s.closed {
			// The old client's state machine has ended and holds no
			// connection; closing it could panic a call still failing on it.
			if c, nerr := esdb.NewClient(s.client); nerr == nil {
				s.conn = c
			}
		}
		s.mu.Unlock()
	}
	return err
}

// stream returns the server's name for a stream of the store.
func (s *Store) stream(name string) string { return s.ns + name }

// Head implements [es.Store]: the position of the last event of the
// store's log, skipping system events (and other namespaces' events).
func (s *Store) Head(ctx context.Context) (es.Position, error) {
	if err := ctx.Err(); err != nil {
		return es.Start, fmt.Errorf("esdbstore: head: %w", err)
	}
	const page = 64
	var from esdb.AllPosition = esdb.End{}
	var cursor *esdb.Position
	for {
		evs, err := s.readAllRaw(ctx, esdb.Backwards, from, page)
		if err != nil {
			return es.Start, fmt.Errorf("esdbstore: head: %w", err)
		}
		for _, e := range evs {
			p := e.Event.Position
			if cursor != nil && !posBefore(p, *cursor) {
				continue // a server that reads backwards inclusively
			}
			if s.visible(e.Event) {
				return es.Position{Commit: p.Commit, Prepare: p.Prepare}, nil
			}
		}
		if len(evs) < page {
			return es.Start, nil
		}
		last := evs[len(evs)-1].Event.Position
		cursor, from = &last, last
	}
}

func posBefore(a, b esdb.Position) bool {
	return a.Commit < b.Commit || (a.Commit == b.Commit && a.Prepare < b.Prepare)
}
