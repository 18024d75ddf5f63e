package pgstore

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
)

// Defaults for [Config].
const (
	SchemaDefault         = "strata"
	PollIntervalDefault   = time.Second
	MaxEventSizeDefault   = 8 << 20
	MaxAppendSizeDefault  = 64 << 20
	GroupCommitMaxDefault = 32
)

// Config tunes a [Store]. The zero value works.
type Config struct {
	// Schema is the PostgreSQL schema that holds the store's tables.
	// Defaults to "strata".
	Schema string
	// PollInterval is how often a subscription looks for new events when no
	// notification arrives. Notifications normally wake subscribers at once;
	// polling covers a lost listener connection. Defaults to 1s.
	PollInterval time.Duration
	// Logger receives the store's diagnostics. Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the spans of appends ("pgstore.append", a child
	// of the span in the caller's context). Defaults to the global
	// provider, otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MaxEventSize is the largest event an append (or an import) may
	// carry, in bytes as [es.EventSize] measures them; a larger one is
	// refused with an [*es.InvalidEventError] before anything is sent.
	// PostgreSQL itself would take a json value of up to 1 GB, but every
	// reader of the log holds a batch of events in memory (500 by default),
	// so the default keeps a batch of the largest events within a few GB
	// while leaving room for any event a domain model needs. Defaults to
	// 8 MiB.
	MaxEventSize int
	// MaxAppendSize is the most bytes one append may carry, all its events
	// together: an append is one statement in one transaction. Defaults to
	// 64 MiB.
	MaxAppendSize int
	// GroupCommitMax is the most appends that concurrent calls of
	// [Store.Append] send together, in one round trip and one commit (see
	// the package documentation). A group also carries at most
	// MaxAppendSize bytes. 1 turns group commit off: every append commits
	// on its own. [Store.AppendTx] is never grouped. Defaults to 32.
	GroupCommitMax int
	// MeterProvider makes the store's metrics (see [MeterName] and
	// docs/observability.md): appends by outcome, events per append,
	// append duration, read and subscription pages, and the time
	// subscriptions were held back. Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

func (c Config) withDefaults() Config {
	c.Schema = cmp.Or(c.Schema, SchemaDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.MaxEventSize = cmp.Or(c.MaxEventSize, MaxEventSizeDefault)
	c.MaxAppendSize = cmp.Or(c.MaxAppendSize, MaxAppendSizeDefault)
	c.GroupCommitMax = cmp.Or(c.GroupCommitMax, GroupCommitMaxDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

// Validate reports every problem with c at once. Zero values are fine: they
// stand for the defaults.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.Schema) > 63:
		errs = append(errs, fmt.Errorf("pgstore: Config.Schema %q is longer than PostgreSQL's 63-byte limit for names", c.Schema))
	case strings.IndexByte(c.Schema, 0) >= 0 || !utf8.ValidString(c.Schema):
		errs = append(errs, fmt.Errorf("pgstore: Config.Schema %q must be valid UTF-8 without NUL bytes", c.Schema))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("pgstore: Config.PollInterval is %v; want a positive duration or 0 for the default", c.PollInterval))
	}
	if c.GroupCommitMax < 0 {
		errs = append(errs, fmt.Errorf("pgstore: Config.GroupCommitMax is %d; want 1 (off), more, or 0 for the default", c.GroupCommitMax))
	}
	if err := c.limits().Validate("pgstore: Config"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) limits() es.SizeLimits {
	return es.SizeLimits{MaxEventSize: c.MaxEventSize, MaxAppendSize: c.MaxAppendSize}
}

// Store is an [es.Store] and [es.SnapshotStore] on PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	cfg     Config
	schema  string // quoted identifier
	channel string // notification channel name, unquoted
	// streamLock is the first key of the advisory locks that serialize
	// appends to a stream: (streamLock, streamKey(stream)). notifyLock is the
	// first key of the locks that let appends skip most notifications (see
	// notify.go): (notifyLock, 1), held by the one append in flight that
	// will notify; (notifyLock, 2…17), one of which every append in flight
	// that may not notify holds in shared mode; and (notifyLock, 18…33),
	// which every listening subscriber holds in shared mode.
	streamLock, notifyLock int32
	q                      queries
	limits                 es.SizeLimits
	group                  group
	tracer                 trace.Tracer // nil for a store without a pool
	metrics                *storeMetrics
}

var (
	_ es.Store         = (*Store)(nil)
	_ es.SnapshotStore = (*Store)(nil)
)

// New returns a store on pool, which the caller owns and closes. Call
// [Store.Migrate] before first use. New panics if cfg is invalid (see
// [Config.Validate]) or pool is nil: both are programming errors.
func New(pool *pgxpool.Pool, cfg Config) *Store {
	if pool == nil {
		panic("pgstore: New: nil pool")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := newStore(cfg.withDefaults())
	s.pool = pool
	return s
}

// newStore returns a store without a pool: enough to expand SQL.
func newStore(cfg Config) *Store {
	s := &Store{
		cfg:     cfg,
		schema:  pgx.Identifier{cfg.Schema}.Sanitize(),
		channel: channelName(cfg.Schema),
	}
	s.streamLock = lockClass("strata/pgstore/streams/" + cfg.Schema)
	s.notifyLock = lockClass("strata/pgstore/notify/" + cfg.Schema)
	s.q = newQueries(s.expand)
	s.limits = cfg.limits()
	s.group.limit = groupsInFlight
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(TracerName)
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	s.metrics = newStoreMetrics(mp)
	return s
}

// Schema returns the name of the schema that holds the store's tables.
func (s *Store) Schema() string { return s.cfg.Schema }

// Channel returns the name of the channel the store notifies when events are
// committed.
func (s *Store) Channel() string { return s.channel }

// expand fills the placeholders of a SQL text: {{schema}} with the quoted
// schema, {{channel}} with the channel as a string literal, and
// {{streamlock}} and {{notifylock}} with the advisory lock classes.
func (s *Store) expand(sql string) string {
	return strings.NewReplacer(
		"{{schema}}", s.schema,
		"{{channel}}", quoteLiteral(s.channel),
		"{{streamlock}}", strconv.Itoa(int(s.streamLock)),
		"{{notifylock}}", strconv.Itoa(int(s.notifyLock)),
	).Replace(sql)
}

// channelName derives the notification channel from the schema. Channel
// names share the 63-byte limit of identifiers, so long schema names are
// hashed.
func channelName(schema string) string {
	if c := schema + ".events"; len(c) <= 63 {
		return c
	}
	sum := sha256.Sum256([]byte(schema))
	return "strata.events." + hex.EncodeToString(sum[:16])
}

// lockClass derives the first key of a family of advisory locks from a name.
func lockClass(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32())
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
