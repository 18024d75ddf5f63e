// Package pgnotify shares one LISTEN connection per [*pgxpool.Pool] among
// everything in the process that waits for PostgreSQL notifications: the
// subscriptions of es/pgstore and the checkpoint watchers of
// projections/pgsink.
//
// [Listen] registers a subscriber for a channel and returns once the
// channel is listened to on the pool's listening connection, so that no
// notification sent by a transaction that commits after Listen returns is
// missed. The first subscriber of a pool opens that connection (with the
// pool's connection settings, outside the pool, with application_name
// "<pool's application_name> listener", or "strata listener"); the last
// one to close closes it. In between it is the only connection that
// listens, whatever the number of subscribers and channels: a channel is
// listened to while it has subscribers (LISTEN for the first, UNLISTEN
// after the last).
//
// One goroutine per pool reads the connection and wakes the subscribers of
// each notification over channels of capacity 1, never blocking: a wake-up
// means "look again", so a subscriber that is slow to look sees one wake-up
// for many notifications, and slows down nobody else.
//
// When the connection breaks, the goroutine connects again, with backoff
// while that fails, listens to every channel that has subscribers, and then
// wakes every subscriber: notifications sent while it was down are lost,
// so each must look again.
//
// The registry keyed by pool is what makes two stores or sinks on the same
// pool share the connection without their callers passing anything around.
package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/internal/backoff"
)

// Reconnection backoff: the first attempt after a connection that lasted
// ReconnectMax broke is immediate; failed attempts, and connections that
// broke sooner, are followed by a wait of ReconnectMin doubled each time,
// at most ReconnectMax, with jitter.
const (
	ReconnectMin = 100 * time.Millisecond
	ReconnectMax = 5 * time.Second
)

// connectTimeout bounds one attempt to connect and listen.
const connectTimeout = 10 * time.Second

// Params says what a subscriber listens for.
type Params struct {
	// Channel is the channel to listen to. Required.
	Channel string
	// Setup, when set, is a statement run on the listening connection
	// before LISTEN, each time the channel starts being listened to on a
	// connection; Teardown, when set, runs after the last subscriber of the
	// (Channel, Setup) pair has closed, on the same connection. pgstore
	// takes and releases session advisory locks with them. Subscribers of
	// one Channel with different Setup statements each get theirs.
	Setup, Teardown string
	// Match, when set, picks the notifications that wake the subscriber by
	// their payload. It runs on the reading goroutine and must be quick.
	// Defaults to every notification on Channel.
	Match func(payload string) bool
	// Logger receives the connection's failures and reconnections, when
	// this subscriber is the one that opens it. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Subscription is one subscriber's registration; see [Listen].
type Subscription struct {
	n     *notifier
	t     *topic
	match func(string) bool
	c     chan struct{}
	ready chan error // receives once: nil when listening, or why not
	fired bool       // ready was sent to; guarded by n.mu
	once  sync.Once
}

// C receives a value when the subscriber should look again: a matching
// notification arrived, or the connection was restored after notifications
// may have been lost. Wake-ups coalesce: it holds at most one.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Close ends the subscription. The last one of a pool closes its
// listening connection and waits for its goroutine to end. Close may be
// called more than once.
func (s *Subscription) Close() {
	s.once.Do(func() { s.n.remove(s) })
}

// Listen registers a subscriber on pool's listening connection, opening it
// if needed, and returns once Params.Channel is listened to on it. It
// fails when ctx ends first, or when the connection cannot be opened or
// the channel listened to: then the subscriber is not registered.
func Listen(ctx context.Context, pool *pgxpool.Pool, p Params) (*Subscription, error) {
	if p.Channel == "" {
		return nil, errors.New("pgnotify: listen: no channel")
	}
	sub := &Subscription{match: p.Match, c: make(chan struct{}, 1), ready: make(chan error, 1)}
	registry.mu.Lock()
	n := registry.m[pool]
	if n == nil {
		n = newNotifier(pool, p.Logger)
		registry.m[pool] = n
	}
	n.add(sub, p)
	registry.mu.Unlock()

	select {
	case err := <-sub.ready:
		if err != nil {
			sub.Close()
			return nil, err
		}
		return sub, nil
	case <-ctx.Done():
		sub.Close()
		return nil, ctx.Err()
	}
}

// registry holds the notifier of each pool that has subscribers.
var registry = struct {
	mu sync.Mutex
	m  map[*pgxpool.Pool]*notifier
}{m: map[*pgxpool.Pool]*notifier{}}

type topicKey struct{ channel, setup string }

type topic struct {
	key      topicKey
	teardown string
	subs     int
	// active: Setup and LISTEN ran on the current connection. failed: they
	// failed there with an error from the server; not retried until the
	// next connection.
	active, failed bool
}

type notifier struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	stop   context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	topics map[topicKey]*topic
	// dirty: subscribers came or went since the connection's listens were
	// last brought in line. interrupt, while the reader waits, ends the
	// wait. kick wakes a reconnection backoff.
	dirty     bool
	interrupt context.CancelFunc
	kick      chan struct{}
}

func newNotifier(pool *pgxpool.Pool, logger *slog.Logger) *notifier {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &notifier{
		pool: pool, logger: logger, stop: cancel, done: make(chan struct{}),
		subs: map[*Subscription]struct{}{}, topics: map[topicKey]*topic{}, kick: make(chan struct{}, 1),
	}
	go n.run(ctx)
	return n
}

// add registers sub; called with registry.mu held.
func (n *notifier) add(sub *Subscription, p Params) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := topicKey{p.Channel, p.Setup}
	t := n.topics[key]
	if t == nil {
		t = &topic{key: key, teardown: p.Teardown}
		n.topics[key] = t
	}
	t.subs++
	t.failed = false // try again
	sub.n, sub.t = n, t
	n.subs[sub] = struct{}{}
	if t.active {
		sub.fire(nil)
		return
	}
	n.wakeLocked()
}

func (n *notifier) remove(sub *Subscription) {
	registry.mu.Lock()
	n.mu.Lock()
	delete(n.subs, sub)
	sub.t.subs--
	last := len(n.subs) == 0
	if last && registry.m[n.pool] == n {
		delete(registry.m, n.pool)
	}
	if !last && sub.t.subs == 0 {
		n.wakeLocked()
	}
	n.mu.Unlock()
	registry.mu.Unlock()
	if last {
		n.stop()
		<-n.done
	}
}

// wakeLocked tells the reader that the listens must be brought in line.
func (n *notifier) wakeLocked() {
	n.dirty = true
	if n.interrupt != nil {
		n.interrupt()
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (s *Subscription) fire(err error) {
	if !s.fired {
		s.fired = true
		s.ready <- err
	}
}

func (s *Subscription) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// run owns the listening connection until ctx ends.
func (n *notifier) run(ctx context.Context) {
	defer close(n.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	// failures counts the failed attempts to connect, and the connections
	// that broke soon after they were opened, since the last connection
	// that lasted: each is followed by a longer backoff.
	var (
		failures, opened int
		since            time.Time
	)
	broke := func(err error) {
		n.lost(ctx, conn, err)
		conn = nil
		if time.Since(since) < ReconnectMax {
			failures++
		} else {
			failures = 0
		}
	}
	for ctx.Err() == nil {
		reconnected := false
		if conn == nil {
			if failures > 0 && !n.backoff(ctx, failures) {
				return
			}
			c, err := n.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				n.failPending(fmt.Errorf("pgnotify: open the listening connection: %w", err))
				n.logger.WarnContext(ctx, "pgnotify: cannot open the listening connection; retrying",
					slog.Any("error", err))
				continue
			}
			opened++
			conn, reconnected, since = c, opened > 1, time.Now()
			select {
			case <-n.kick: // the subscribers that kicked are handled now
			default:
			}
		}
		if err := n.sync(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return
			}
			broke(err)
			continue
		}
		if reconnected {
			n.wakeAll()
		}
		note, err := n.wait(ctx, conn)
		switch {
		case note != nil:
			n.deliver(note)
		case err == nil: // interrupted: listens to change
		case ctx.Err() != nil:
			return
		default:
			broke(err)
		}
	}
}

func (n *notifier) backoff(ctx context.Context, failures int) bool {
	d := backoff.Backoff{Min: ReconnectMin, Max: ReconnectMax}.Delay(failures - 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.kick: // a new subscriber should not wait for the backoff
	case <-ctx.Done():
		return false
	}
	return true
}

func (n *notifier) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := n.pool.Config().ConnConfig.Copy()
	// The reader's waits are ended by cancelling their context, which must
	// not send a cancel request to the server or close the connection.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	cfg.RuntimeParams["application_name"] = AppName(cfg.RuntimeParams["application_name"])
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// AppName is the application_name of the listening connection of a pool
// whose connections have application_name app: app + " listener", or
// "strata listener" when app is empty.
func AppName(app string) string {
	if app == "" {
		app = "strata"
	}
	return app + " listener"
}

// sync brings the listens of conn in line with the subscribers: it runs
// Setup and LISTEN for the topics that have subscribers and are not active,
// Teardown and UNLISTEN for those that have none, until nothing is left to
// do. It returns an error when the connection failed.
func (n *notifier) sync(ctx context.Context, conn *pgx.Conn) error {
	for {
		n.mu.Lock()
		n.dirty = false
		var up, down []*topic
		for key, t := range n.topics {
			switch {
			case t.subs > 0 && !t.active && !t.failed:
				up = append(up, t)
			case t.subs == 0 && t.active:
				t.active = false // newcomers wait for it to be listened to again
				down = append(down, t)
			case t.subs == 0:
				delete(n.topics, key)
			}
		}
		listened := map[string]bool{}
		for _, t := range n.topics {
			if t.active {
				listened[t.key.channel] = true
			}
		}
		n.mu.Unlock()
		if len(up) == 0 && len(down) == 0 {
			return nil
		}
		for _, t := range down {
			if t.teardown != "" {
				if _, err := conn.Exec(ctx, t.teardown); err != nil && !serverError(err) {
					return err
				}
			}
			if !listened[t.key.channel] && !pending(up, t.key.channel) {
				if _, err := conn.Exec(ctx, "UNLISTEN "+pgx.Identifier{t.key.channel}.Sanitize()); err != nil && !serverError(err) {
					return err
				}
			}
		}
		for _, t := range up {
			err := n.listen(ctx, conn, t, listened[t.key.channel])
			if err != nil && !serverError(err) {
				return err
			}
			listened[t.key.channel] = listened[t.key.channel] || err == nil
			n.mu.Lock()
			if err != nil {
				t.failed = true
				err = fmt.Errorf("pgnotify: listen to %s: %w", t.key.channel, err)
			} else {
				t.active = true
			}
			for sub := range n.subs {
				if sub.t == t {
					sub.fire(err)
				}
			}
			n.mu.Unlock()
		}
	}
}

func pending(up []*topic, channel string) bool {
	for _, t := range up {
		if t.key.channel == channel {
			return true
		}
	}
	return false
}

func (n *notifier) listen(ctx context.Context, conn *pgx.Conn, t *topic, listening bool) error {
	if t.key.setup != "" {
		if _, err := conn.Exec(ctx, t.key.setup); err != nil {
			return err
		}
	}
	if listening {
		return nil
	}
	_, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{t.key.channel}.Sanitize())
	return err
}

// serverError reports whether err is an error the server sent for a
// statement, which leaves the connection usable.
func serverError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Severity == "ERROR"
}

// wait returns the next notification, or nil and a nil error when the
// listens must change, or the error that ended the wait.
func (n *notifier) wait(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.mu.Lock()
	if n.dirty {
		n.mu.Unlock()
		return nil, nil
	}
	n.interrupt = cancel
	n.mu.Unlock()
	note, err := conn.WaitForNotification(wctx)
	n.mu.Lock()
	n.interrupt = nil
	n.mu.Unlock()
	if note != nil {
		return note, nil
	}
	if ctx.Err() == nil && wctx.Err() != nil && !conn.IsClosed() {
		return nil, nil
	}
	return nil, err
}

func (n *notifier) deliver(note *pgconn.Notification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs {
		if sub.t.key.channel == note.Channel && sub.t.active && (sub.match == nil || sub.match(note.Payload)) {
			sub.wake()
		}
	}
}

func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs {
		sub.wake()
	}
}

// failPending tells the subscribers still waiting to be listened for that
// it did not happen.
func (n *notifier) failPending(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs {
		sub.fire(err)
	}
}

// lost forgets the broken connection conn: every topic must be listened to
// again on the next one.
func (n *notifier) lost(ctx context.Context, conn *pgx.Conn, err error) {
	n.logger.WarnContext(ctx, "pgnotify: lost the listening connection; reconnecting", slog.Any("error", err))
	closeConn(conn)
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, t := range n.topics {
		t.active, t.failed = false, false
		if t.subs == 0 {
			delete(n.topics, key)
		}
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
