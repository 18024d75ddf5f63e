package pgsink

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/stratadev/strata/internal/pgnotify"
)

// Every change of a checkpoint (a batch, SetState, Reset, a rebuild's swap)
// sends a notification with the projection's name on the sink's channel,
// in the transaction that makes the change. WatchCheckpoint listens on the
// pool's listening connection (internal/pgnotify), which every watcher and
// every pgstore subscription on the pool shares: it is opened by the first
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

// WatchCheckpoint implements [projections.CheckpointWatcher] with
// LISTEN/NOTIFY: it returns once the pool's listening connection listens to
// the sink's channel. The channel also receives a value after that
// connection was lost and opened again, since a change may have been
// missed meanwhile.
func (s *Sink) WatchCheckpoint(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	sub, err := pgnotify.Listen(ctx, s.pool, pgnotify.Params{
		Channel: s.channel,
		Match:   func(payload string) bool { return payload == name },
		Logger:  s.cfg.Logger,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("pgsink: listen for checkpoint changes: %w", err)
	}
	return sub.C(), sub.Close, nil
}
