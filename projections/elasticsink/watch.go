package elasticsink

import (
	"context"

	"github.com/stratadev/strata/projections"
)

var _ projections.CheckpointWatcher = (*Sink)(nil)

// WatchCheckpoint implements [projections.CheckpointWatcher] with the
// PostgreSQL sink that keeps the checkpoints, so that an idle worker
// notices a reset, and a runner a resume, at once.
func (s *Sink) WatchCheckpoint(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	return s.pg.WatchCheckpoint(ctx, name)
}
