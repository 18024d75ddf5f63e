package elasticsink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Defaults for [Config].
const (
	FlushActionsDefault   = 1000
	FlushBytesDefault     = 5 << 20
	ConcurrencyDefault    = 2
	MaxRetriesDefault     = 8
	RetryMinDefault       = 100 * time.Millisecond
	RetryMaxDefault       = 5 * time.Second
	RequestTimeoutDefault = 10 * time.Second
	BulkTimeoutDefault    = 30 * time.Second
)

// IndexLostPolicy says what a worker made with [NewWorker] does when the
// index behind its projection's alias is not the one its checkpoint
// belongs to (see [IndexLostError]).
type IndexLostPolicy uint8

const (
	// StallProjection stops the projection, marked stalled with the
	// [IndexLostError] as its last error, until an operator rebuilds the
	// index. It is the default.
	StallProjection IndexLostPolicy = iota
	// RebuildIndex resets the checkpoint to the start of the log and puts
	// a new, empty generation behind the alias, which the worker then
	// fills. Searches see a partial index until it has caught up; the
	// index that was behind the alias is left in place, without the alias.
	RebuildIndex
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
	//
	// A worker whose projections.Config.BatchSize is 0 takes batches of
	// FlushActions × Concurrency events (2000 by default; see
	// [Sink.BatchSize]), so that each batch fills its requests and sends
	// them in parallel.
	Concurrency int
	// MaxRetries is how often items refused for a retryable reason (429,
	// 5xx) are sent again within one batch, with exponential backoff
	// between RetryMin and RetryMax, before the batch fails with a
	// transient error. Default to 8, 100ms and 5s.
	MaxRetries         int
	RetryMin, RetryMax time.Duration
	// Version, when set, maps an event's log position to the external
	// version of the documents it writes, instead of the counter kept with
	// the checkpoint (the default; see the package documentation). It must
	// be monotonic in log order and deterministic; [PackedVersion] is one
	// for small positions. Changing it for an index that holds documents
	// loses writes.
	Version func(es.Position) (int64, error)
	// RequestTimeout bounds each read the sink makes (resolve an alias,
	// read documents to update, read an index's mappings), response
	// included. Defaults to 10s.
	RequestTimeout time.Duration
	// BulkTimeout bounds each bulk request and each change to an index or
	// an alias (create, refresh, delete, move the alias), response
	// included. A request that times out fails the batch with a transient
	// error ([ErrTimeout]), which the worker retries from the checkpoint
	// and shows in the status meanwhile. Defaults to 30s.
	BulkTimeout time.Duration
	// OnIndexLost says what a worker does when the index behind its alias
	// is not the one its checkpoint belongs to. Defaults to StallProjection.
	OnIndexLost IndexLostPolicy
	// Refresh is the bulk API's refresh parameter: "" (the default) leaves
	// refreshing to the index's refresh interval; "wait_for" makes each
	// batch searchable before its checkpoint moves, at a cost in
	// throughput.
	Refresh string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MeterProvider makes the sink's metrics: bulk requests, items by
	// action and status, refused items and retries (see [MeterName]).
	// Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
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
	if c.RequestTimeout < 0 || c.BulkTimeout < 0 {
		errs = append(errs, fmt.Errorf("elasticsink: Config.RequestTimeout (%v) and BulkTimeout (%v) must not be negative", c.RequestTimeout, c.BulkTimeout))
	}
	if c.OnIndexLost > RebuildIndex {
		errs = append(errs, fmt.Errorf("elasticsink: Config.OnIndexLost %d is unknown", c.OnIndexLost))
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
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	c.BulkTimeout = cmp.Or(c.BulkTimeout, BulkTimeoutDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

// Sink keeps Elasticsearch read models. It is a [projections.Sink] whose
// handlers get a [*Tx]; checkpoints, dead letters and leases are its
// [Keeper]'s, so it is also a [projections.Locker] and a
// [projections.Checkpoints].
type Sink struct {
	client  *elasticsearch.Client
	pg      Keeper
	cfg     Config
	metrics *sinkMetrics

	mu       sync.Mutex
	migrated bool // Migrate succeeded
}

var (
	_ projections.Sink[*Tx] = (*Sink)(nil)
	_ projections.Locker    = (*Sink)(nil)
)

// New returns a sink that writes documents with client and keeps
// checkpoints with pg, a *pgsink.Sink say. The caller owns both. The sink
// creates its tables in pg's schema on first use (see [Sink.Migrate]). New
// panics if cfg is invalid or an argument is nil.
func New(client *elasticsearch.Client, pg Keeper, cfg Config) *Sink {
	if client == nil || pg == nil {
		panic("elasticsink: New: nil argument")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	return &Sink{client: client, pg: pg, cfg: cfg, metrics: newSinkMetrics(cfg.MeterProvider)}
}

// Client returns the sink's Elasticsearch client, for reads and anything
// the sink does not do.
func (s *Sink) Client() *elasticsearch.Client { return s.client }

// Checkpoints returns the [Keeper] that keeps the checkpoints, as passed
// to [New].
func (s *Sink) Checkpoints() Keeper { return s.pg }

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
	index string // empty: the aliases the handler names, checked by a guard
	// main is the alias of the projection's own index, and proj the
	// projection, when the sink knows them (workers made with NewWorker).
	main string
	proj Projection
}

func (s *Sink) apply(ctx context.Context, p projections.ApplyParams, tg target, handle func(context.Context, *Tx) error) error {
	if err := s.migrateOnce(ctx); err != nil {
		return err
	}
	if len(p.Events) == 0 && p.From == es.Start && tg.index == "" {
		// The keeper runs no handler for a batch without events (a
		// *pgsink.Sink skips it), so the checkpoint would first move
		// with no record, which later batches take for a lost one.
		if err := s.recordFirst(ctx, p.Projection, tg); err != nil {
			return err
		}
	}
	return s.pg.ApplyTx(ctx, p, func(ctx context.Context, ptx pgx.Tx) error {
		// Held with the checkpoint, until the checkpoint moves.
		rec, err := s.heldRecord(ctx, ptx, p.Projection)
		if err != nil {
			return err
		}
		tx := s.newTx(ptx, tg)
		if s.cfg.Version == nil {
			// The events are numbered on from the counter: the same
			// events after the same checkpoint get the same versions,
			// and the counter never goes back.
			tx.versions = make(map[es.Position]int64, len(p.Events))
			for i, ev := range p.Events {
				tx.versions[ev.Record.Position] = rec.version + int64(i) + 1
			}
			rec.version += int64(len(p.Events))
		}
		if tg.index == "" {
			tx.guard = &guard{sink: s, name: p.Projection, from: p.From, rec: &rec, main: tg.main, proj: tg.proj}
			if tg.main != "" {
				// Before the handler, so that a lost index is not taken
				// for the fault of an event.
				if _, err := tx.guard.index(ctx, tg.main); err != nil {
					return err
				}
			}
		}
		if err := handle(ctx, tx); err != nil {
			return err
		}
		if err := tx.Flush(ctx); err != nil {
			return err
		}
		return s.saveRecord(ctx, ptx, p.Projection, rec)
	})
}

// recordFirst writes name's record while its checkpoint is at the start
// of the log, before a batch without events moves it: past events the
// projection does not handle, or past a dead letter. The batch writes no
// document, yet the checkpoint it leaves behind needs a record, or the
// next batch would find its index lost. When the projection's alias is
// known (tg.main), the record names the index behind it, created when
// there is none; otherwise it names none, which lets the next batch adopt
// the indices it writes. The checkpoint is held meanwhile, so that the
// record is not written over one that a rebuild hands over; when it has
// left the start, the batch finds it moved and nothing is written.
func (s *Sink) recordFirst(ctx context.Context, name string, tg target) error {
	cp, release, err := s.pg.HoldCheckpoint(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	if cp.Position != es.Start {
		return nil
	}
	return s.pg.BeginTx(ctx, func(ctx context.Context, ptx pgx.Tx) error {
		rec, err := s.heldRecord(ctx, ptx, name)
		if err != nil {
			return err
		}
		if tg.main != "" {
			g := &guard{sink: s, name: name, from: es.Start, rec: &rec, main: tg.main, proj: tg.proj}
			if _, err := g.index(ctx, tg.main); err != nil {
				return err
			}
		}
		return s.saveRecord(ctx, ptx, name, rec)
	})
}

var _ projections.BatchSizer = (*Sink)(nil)

// BatchSize implements [projections.BatchSizer]: FlushActions ×
// Concurrency events, enough for a batch of one document per event to fill
// Concurrency requests sent at once. With a smaller batch, each batch is
// one request and the batches go one after the other (bulk, then commit,
// then the next bulk); a worker whose projections.Config.BatchSize is 0
// takes this size instead of projections.BatchSizeDefault.
func (s *Sink) BatchSize() int { return s.cfg.FlushActions * s.cfg.Concurrency }

// Checkpoint implements [projections.Checkpoints].
func (s *Sink) Checkpoint(ctx context.Context, name string) (projections.Checkpoint, error) {
	return s.pg.Checkpoint(ctx, name)
}

// SetState implements [projections.Checkpoints].
func (s *Sink) SetState(ctx context.Context, name string, state projections.State, f *projections.Failure) error {
	return s.pg.SetState(ctx, name, state, f)
}

// TryLock implements [projections.Locker] with the [Keeper]'s leases.
func (s *Sink) TryLock(ctx context.Context, name string) (projections.Lease, bool, error) {
	return s.pg.TryLock(ctx, name)
}

// Transient implements [projections.Sink]: err is worth retrying when
// [IsTransient] says so, or the [Keeper] does (PostgreSQL unreachable, say).
func (s *Sink) Transient(err error) bool { return IsTransient(err) || s.pg.Transient(err) }

// IsTransient reports whether an error of Elasticsearch is worth retrying:
// Elasticsearch unreachable, overloaded or not answering (429, 5xx,
// connection errors, [ErrTimeout]), items that kept failing for such
// reasons ([ErrRetriesExhausted]), or an index that is missing for a moment
// while an alias moves. [Sink.Transient] adds the errors of its [Keeper].
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrRetriesExhausted) || errors.Is(err, ErrTimeout) || errors.Is(err, errAliasMoving) {
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
	return false
}

// TimeoutError is a request Elasticsearch did not answer in time.
type TimeoutError struct {
	Op    string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("elasticsink: %s: no answer from Elasticsearch within %v", e.Op, e.After)
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// small bounds a read by RequestTimeout.
func (s *Sink) small(ctx context.Context, op string) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.cfg.RequestTimeout, &TimeoutError{Op: op, After: s.cfg.RequestTimeout})
}

// timedOut returns the *TimeoutError of ctx, made by small or a bulk
// request, when err happened because it expired, and err otherwise.
func timedOut(ctx context.Context, err error) error {
	var te *TimeoutError
	if err != nil && errors.As(context.Cause(ctx), &te) {
		return te
	}
	return err
}

var _ projections.RetryRecorder = (*Sink)(nil)

// SetRetrying implements [projections.RetryRecorder] through the
// [Keeper]: it records f as the last error of a running projection where
// every status reader finds it, or clears such a record when f is nil.
// Elasticsearch is what fails while PostgreSQL answers, so the record can
// be written.
func (s *Sink) SetRetrying(ctx context.Context, name string, f *projections.Failure) error {
	return s.pg.SetRetrying(ctx, name, f)
}
