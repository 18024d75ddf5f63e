package pgsink

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Every change of a checkpoint (a batch, SetState, Reset, a rebuild's swap)
// sends a notification with the projection's name on the sink's channel,
// in the transaction that makes the change. WatchCheckpoint shares one
// listening connection among all watchers of the sink, opened by the first
// and closed when the last stops, so no goroutine outlives its watchers.

// channelName is the notification channel of a sink's schema: at most 63
// bytes, the limit of an identifier. Schemas whose names only differ after
// that share a channel, which costs spurious wake-ups and nothing else.
func channelName(schema string) string {
	c := "strata_checkpoints." + schema
	if len(c) > 63 {
		c = c[:63]
		for !utf8.ValidString(c) {
			c = c[:len(c)-1]
		}
	}
	return c
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

type listener struct {
	cancel context.CancelFunc
	ready  chan struct{} // closed when listening, or when that failed (err)
	done   chan struct{} // closed when the goroutine has ended
	err    error
	subs   map[chan struct{}]string // guarded by Sink.mu
}

// WatchCheckpoint implements [projections.CheckpointWatcher] with
// LISTEN/NOTIFY: it returns once the sink listens to its channel.
func (s *Sink) WatchCheckpoint(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	l := s.listener
	if l == nil || closed(l.done) {
		lctx, cancel := context.WithCancel(context.Background())
		l = &listener{cancel: cancel, ready: make(chan struct{}), done: make(chan struct{}), subs: map[chan struct{}]string{}}
		s.listener = l
		go s.listen(lctx, l)
	}
	l.subs[ch] = name
	s.mu.Unlock()
	stop := func() {
		s.mu.Lock()
		delete(l.subs, ch)
		last := len(l.subs) == 0
		if last && s.listener == l {
			s.listener = nil
		}
		s.mu.Unlock()
		if last {
			l.cancel()
			<-l.done
		}
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	}
	if l.err != nil {
		stop()
		return nil, nil, l.err
	}
	return ch, stop, nil
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// listen runs l: it listens on a connection of its own and signals the
// watchers of each notified projection. When the connection breaks it
// signals every watcher, so that they read their checkpoint again, and
// ends; the next WatchCheckpoint starts another listener.
func (s *Sink) listen(ctx context.Context, l *listener) {
	defer close(l.done)
	readyOnce := func(err error) {
		if !closed(l.ready) {
			l.err = err
			close(l.ready)
		}
	}
	cfg := s.pool.Config().ConnConfig.Copy()
	// A watcher that stops cancels the wait: that must not send a cancel
	// request to the server.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	if err == nil {
		if _, err = conn.Exec(connectCtx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
			closeConn(conn)
		}
	}
	cancel()
	if err != nil {
		readyOnce(fmt.Errorf("pgsink: listen for checkpoint changes: %w", err))
		return
	}
	defer closeConn(conn)
	readyOnce(nil)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.WarnContext(ctx, "pgsink: lost the connection that listens for checkpoint changes",
					slog.String("channel", s.channel), slog.Any("error", err))
				s.signal(l, "")
			}
			return
		}
		s.signal(l, n.Payload)
	}
}

// signal wakes the watchers of l that watch projection, or all of them
// when projection is "".
func (s *Sink) signal(l *listener, projection string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, name := range l.subs {
		if projection == "" || name == projection {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
