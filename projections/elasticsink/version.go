package elasticsink

import (
	"fmt"

	"github.com/stratadev/strata/es"
)

// Limits of [PackedVersion].
const (
	MaxPackedCommit  = 1<<31 - 1
	MaxPackedPrepare = 1<<32 - 1
)

// PackedVersion is a [Config.Version] for stores with small positions:
// Commit in the high 31 bits and Prepare in the low 32 bits of a positive
// int64, which is monotonic in log order and the same for the same position
// every time. It returns an error wrapping [ErrVersionRange] when Commit >
// [MaxPackedCommit] or Prepare > [MaxPackedPrepare], which on pgstore
// happens once the cluster has run 2^31 transactions: the default, a
// counter kept with the checkpoint, has no such limit.
func PackedVersion(p es.Position) (int64, error) {
	if p.Commit > MaxPackedCommit || p.Prepare > MaxPackedPrepare {
		return 0, fmt.Errorf("%w: %s needs commit <= %d and prepare <= %d; set elasticsink.Config.Version",
			ErrVersionRange, p, uint64(MaxPackedCommit), uint64(MaxPackedPrepare))
	}
	return int64(p.Commit<<32 | p.Prepare), nil
}
