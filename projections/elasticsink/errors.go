package elasticsink

import (
	"errors"
	"fmt"

	"github.com/stratadev/strata/es"
)

var (
	// ErrVersionRange means a log position does not fit the external
	// version scheme (see [PackedVersion]).
	ErrVersionRange = errors.New("elasticsink: position out of the external version range")
	// ErrItem means Elasticsearch refused a document for a reason that
	// retrying will not fix. The details are in an [*ItemError].
	ErrItem = errors.New("elasticsink: document refused")
	// ErrRetriesExhausted means items kept failing for retryable reasons.
	// It is transient: the worker retries the batch from its checkpoint.
	ErrRetriesExhausted = errors.New("elasticsink: retries exhausted")
	// ErrTimeout means Elasticsearch did not answer a request within
	// [Config.RequestTimeout] or [Config.BulkTimeout]. It is transient.
	ErrTimeout = errors.New("elasticsink: no answer from Elasticsearch in time")
	// ErrIndexLost means the index behind a projection's alias is not the
	// one its checkpoint belongs to, or is gone. The details are in an
	// [*IndexLostError].
	ErrIndexLost = errors.New("elasticsink: index lost")
)

// IndexLostError says that the documents of the events up to a
// projection's checkpoint are not where the checkpoint says: the index
// behind the alias was deleted, or replaced by another (a new or restored
// Elasticsearch cluster, an index created by hand), or no index was ever
// recorded for the checkpoint. Going on would leave the older documents
// out for good; rebuilding the index brings them back.
type IndexLostError struct {
	Projection, Alias string
	Checkpoint        es.Position
	// Want is the index the checkpoint belongs to ("" when none is
	// recorded) and Got the one behind the alias ("" when there is none),
	// each as "name (uuid …)".
	Want, Got string
}

func (e *IndexLostError) Error() string {
	var what string
	switch {
	case e.Want == "":
		what = fmt.Sprintf("its checkpoint is at %s but no index is recorded for it (an earlier version of strata wrote it, or the record was deleted), so %s cannot be trusted to hold the documents of the events before it",
			e.Checkpoint, e.Alias)
	case e.Got == "":
		what = fmt.Sprintf("the alias %s is gone, with index %s that held the documents of the events up to the checkpoint %s",
			e.Alias, e.Want, e.Checkpoint)
	default:
		what = fmt.Sprintf("the alias %s points at index %s, but the checkpoint %s belongs to index %s: the index was replaced (a new or restored cluster?) and lacks the documents of the events before the checkpoint",
			e.Alias, e.Got, e.Checkpoint, e.Want)
	}
	return fmt.Sprintf("elasticsink: %s: %s; rebuild the index with `projections rebuild %s` (or Sink.Rebuild), or set elasticsink.Config.OnIndexLost to RebuildIndex",
		e.Projection, what, e.Projection)
}

func (e *IndexLostError) Unwrap() error { return ErrIndexLost }

// ItemError is a bulk item that Elasticsearch refused.
type ItemError struct {
	Index, ID string
	Action    string // index or delete
	Status    int
	// Type and Reason are Elasticsearch's, with the root cause's when
	// there is one.
	Type, Reason string
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("elasticsink: %s %s/%s: %d %s: %s", e.Action, e.Index, e.ID, e.Status, e.Type, e.Reason)
}

func (e *ItemError) Unwrap() error { return ErrItem }

// ResponseError is an Elasticsearch request that failed as a whole.
type ResponseError struct {
	Op     string
	Status int
	Body   string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("elasticsink: %s: %d: %s", e.Op, e.Status, e.Body)
}

// retryableStatus reports whether an item or request with this status is
// worth sending again.
func retryableStatus(status int) bool {
	return status == 429 || status >= 500
}
