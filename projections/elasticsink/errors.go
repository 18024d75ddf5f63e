package elasticsink

import (
	"errors"
	"fmt"
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
)

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
