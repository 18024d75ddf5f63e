package elasticsink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// Defaults for [Config].
const (
	FlushActionsDefault = 1000
	FlushBytesDefault   = 5 << 20
	ConcurrencyDefault  = 2
	MaxRetriesDefault   = 8
	RetryMinDefault     = 100 * time.Millisecond
	RetryMaxDefault     = 5 * time.Second
)

// Config tunes a [Sink]. The zero value works.
type Config struct {
	// FlushActions and FlushBytes bound one bulk request: actions, and
	// bytes of its body. A batch bigger than that is sent as several
	// requests. Default to 1000 and 5 MiB.
	FlushActions, FlushBytes int
	// Concurrency is how many bulk requests of one batch are in flight at
	// once. Each document appears once per batch, so their order does not
	// matter. Defaults to 2.
	Concurrency int
	// MaxRetries is how often items refused for a retryable reason (429,
	// 5xx) are sent again within one batch, with exponential backoff
	// between RetryMin and RetryMax, before the batch fails with a
	// transient error. Default to 8, 100ms and 5s.
	MaxRetries         int
	RetryMin, RetryMax time.Duration
	// Version maps an event's log position to the external version of the
	// documents it writes. It must be monotonic in log order and
	// deterministic. Defaults to [PackedVersion]. Changing it for an index
	// that holds documents loses writes; see the package documentation.
	Version func(es.Position) (int64, error)
	// Refresh is the bulk API's refresh parameter: "" (the default) leaves
	// refreshing to the index's refresh interval; "wait_for" makes each
	// batch searchable before its checkpoint moves, at a cost in
	// throughput.
	Refresh string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.FlushActions < 0 {
		errs = append(errs, fmt.Errorf("elasticsink: Config.FlushActions is %d; want 0 (default) or more", c.FlushActions))
	}
	if c.FlushBytes < 0 {
		errs = append(errs, fmt.Errorf("elasticsink: Config.FlushBytes is %d; want 0 (default) or more", c.FlushBytes))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("elasticsink: Config.Concurrency is %d; want 0 (default) or more", c.Concurrency))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("elasticsink: Config.MaxRetries is %d; want 0 (default) or more", c.MaxRetries))
	}
	if c.RetryMin < 0 || c.RetryMax < 0 || (c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax) {
		errs = append(errs, fmt.Errorf("elasticsink: Config.RetryMin (%v) and RetryMax (%v) must not be negative, and RetryMin not above RetryMax", c.RetryMin, c.RetryMax))
	}
	switch c.Refresh {
	case "", "false", "true", "wait_for":
	default:
		errs = append(errs, fmt.Errorf("elasticsink: Config.Refresh is %q; want \"\", \"true\", \"false\" or \"wait_for\"", c.Refresh))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.FlushActions = cmp.Or(c.FlushActions, FlushActionsDefault)
	c.FlushBytes = cmp.Or(c.FlushBytes, FlushBytesDefault)
	c.Concurrency = cmp.Or(c.Concurrency, ConcurrencyDefault)
	c.MaxRetries = cmp.Or(c.MaxRetries, MaxRetriesDefault)
	c.RetryMin = cmp.Or(c.RetryMin, RetryMinDefault)
	c.RetryMax = cmp.Or(c.RetryMax, RetryMaxDefault)
	if c.Version == nil {
		c.Version = PackedVersion
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Sink keeps Elasticsearch read models. It is a [projections.Sink] whose
// handlers get a [*Tx]; checkpoints, dead letters and leases are the
// PostgreSQL sink's, so it is also a [projections.Locker] and a
// [projections.Checkpoints].
type Sink struct {
	client *elasticsearch.Client
	pg     *pgsink.Sink
	cfg    Config
}

var (
	_ projections.Sink[*Tx] = (*Sink)(nil)
	_ projections.Locker    = (*Sink)(nil)
)

// New returns a sink that writes documents with client and keeps
// checkpoints with pg (call pg.Migrate before first use). The caller owns
// both. New panics if cfg is invalid or an argument is nil.
func New(client *elasticsearch.Client, pg *pgsink.Sink, cfg Config) *Sink {
	if client == nil || pg == nil {
		panic("elasticsink: New: nil argument")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Sink{client: client, pg: pg, cfg: cfg.withDefaults()}
}

// Client returns the sink's Elasticsearch client, for reads and anything
// the sink does not do.
func (s *Sink) Client() *elasticsearch.Client { return s.client }

// Checkpoints returns the PostgreSQL sink that keeps the checkpoints.
func (s *Sink) Checkpoints() *pgsink.Sink { return s.pg }

// Apply implements [projections.Sink]. In one PostgreSQL transaction it
// locks the checkpoint and checks it is at p.From, runs handle, sends the
// documents handle wrote that are not sent yet, stores p.DeadLetters and
// moves the checkpoint to p.To. The checkpoint moves only if every bulk
// item was applied (or was already applied).
//
// Handlers of workers made with [NewWorker] have sent their documents by
// the time handle returns, so that a refused document is the handler's
// failure and follows the error policy. A refusal found here, after
// handle, fails the batch with an [*ItemError] instead.
func (s *Sink) Apply(ctx context.Context, p projections.ApplyParams, handle func(context.Context, *Tx) error) error {
	return s.apply(ctx, p, target{}, handle)
}

// target is where a Tx writes: the alias (live) or a generation's index
// (rebuild).
type target struct {
	index string // empty: the projection's alias, named by the handler's Tx
}

func (s *Sink) apply(ctx context.Context, p projections.ApplyParams, tg target, handle func(context.Context, *Tx) error) error {
	return s.pg.Apply(ctx, p, func(ctx context.Context, ptx *pgsink.Tx) error {
		tx := s.newTx(ptx, tg)
		if err := handle(ctx, tx); err != nil {
			return err
		}
		return tx.Flush(ctx)
	})
}

// Checkpoint implements [projections.Checkpoints].
func (s *Sink) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	return s.pg.Checkpoint(ctx, name)
}

// SetState implements [projections.Checkpoints].
func (s *Sink) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	return s.pg.SetState(ctx, name, state, f)
}

// TryLock implements [projections.Locker] with pgsink's leases.
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	return s.pg.TryLock(ctx, name)
}

// Transient implements [projections.Sink].
func (s *Sink) Transient(err error) bool { return IsTransient(err) }

// IsTransient reports whether err is worth retrying: Elasticsearch or
// PostgreSQL unreachable or overloaded (429, 5xx, connection errors), items
// that kept failing for such reasons ([ErrRetriesExhausted]), or an index
// that is missing for a moment while an alias moves.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrRetriesExhausted) {
		return true
	}
	var re *ResponseError
	if errors.As(err, &re) {
		return retryableStatus(re.Status)
	}
	var ie *ItemError
	if errors.As(err, &ie) {
		return retryableStatus(ie.Status) || ie.Type == "index_not_found_exception"
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	return pgsink.IsTransient(err)
}
