// Package app wires the order example together: the PostgreSQL event
// store, the command bus, the projections and their sinks, the checkout
// process (examples/orders/checkout) and the HTTP API, so that one
// process (or a test) runs all of it:
//
//	a, err := app.New(ctx, app.Config{Pool: pool, Elastic: client})
//	go a.Run(ctx) // the projection workers and the checkout, until ctx ends
//	http.ListenAndServe(addr, a.Handler)
//
// A projection that stalls (the checkout's log follower among them) stays
// stalled and is reported by GET /healthz; the other projections and the
// write and read APIs keep running.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/examples/orders/httpapi"
	"github.com/stratadev/strata/examples/orders/publish"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/pgsink"
)

// SchemaDefault is the schema of the example's tables: pgstore's and the
// strata CLI's default, so that the CLI finds them without flags.
const SchemaDefault = pgstore.SchemaDefault

// SearchOffDefault says how to turn search on.
const SearchOffDefault = "search is off: this server runs without Elasticsearch. " +
	"Install Java 17+ and run scripts/ensure-elasticsearch.sh (make demo does), " +
	"or set ELASTICSEARCH_URL to a server, then start again"

// Config configures an [App]. Pool is required.
type Config struct {
	// Pool is the PostgreSQL database of the event store, the checkpoints
	// and the read models. The caller owns it.
	Pool *pgxpool.Pool
	// Schema holds every table. Defaults to SchemaDefault ("strata").
	Schema string
	// Elastic is the Elasticsearch client of the order_search read model.
	// Nil turns search off.
	Elastic *elasticsearch.Client
	// SearchAlias is the alias of the order_search index. Defaults to
	// readmodel.OrderSearchName.
	SearchAlias string
	// SearchOff says, when Elastic is nil, why search is off and how to turn
	// it on. Defaults to SearchOffDefault.
	SearchOff string
	// ReadWait bounds how long a read with a consistency token waits.
	// Defaults to httpapi.ReadWaitDefault (2s).
	ReadWait time.Duration
	// SearchTimeout bounds a search. Defaults to
	// httpapi.SearchTimeoutDefault (5s).
	SearchTimeout time.Duration
	// Worker configures the projection workers; its Logger defaults to
	// Logger.
	Worker projections.Config
	// Runner configures the runner of the workers; its Logger defaults to
	// Logger.
	Runner projections.RunnerConfig
	// PollInterval is the event store's fallback poll interval. Defaults to
	// pgstore's default.
	PollInterval time.Duration
	// KafkaBrokers are the bootstrap addresses of the Kafka cluster the
	// order_events projection publishes the integration events to (see
	// examples/orders/publish). Empty turns publishing off.
	KafkaBrokers []string
	// KafkaPrefix is the transactional ID prefix of the publishing
	// producer, which also keys its checkpoint in Kafka. Defaults to
	// publish.TransactionalIDPrefix; tests that share a broker set their
	// own.
	KafkaPrefix string
	// KafkaTopic is the topic it publishes to. Defaults to contract.Topic
	// ("orders.v1").
	KafkaTopic string
	// Checkout tunes the checkout process and the simulated payment
	// gateway (the payment deadline). Defaults to the zero checkout.Config.
	Checkout checkout.Config
	// Process tunes the runners of the checkout and of the gateway; its
	// Logger defaults to Logger, and its Runner.OnChange is called after
	// the app has recorded the change for [App.Health]. Defaults to the
	// zero pgprocess.Config.
	Process pgprocess.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the spans of the HTTP requests, the commands
	// (cqrs.Tracing), the appends and, unless Worker sets its own, the
	// projection batches. Defaults to the global provider,
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics of the event store, the commands
	// (cqrs.Metrics), the projection workers (unless Worker sets its own),
	// the Elasticsearch and Kafka sinks and the process runners (unless
	// Process sets its own). Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// App is the example's running parts.
type App struct {
	Pool     *pgxpool.Pool
	Schema   string
	Store    *pgstore.Store
	Registry *es.Registry
	Repos    orders.Repositories
	Bus      *cqrs.Bus
	Sink     *pgsink.Sink
	// Elastic is nil when search is off.
	Elastic *elasticsink.Sink
	// Kafka publishes the integration events; nil when publishing is off.
	Kafka  *kafkasink.Sink
	Reader *readmodel.Reader
	Search *readmodel.Search // nil when search is off
	// Handler serves the write and read APIs, and GET /healthz.
	Handler http.Handler
	// Runner runs the projection workers (see [App.Run]); its Health is
	// what GET /healthz reports.
	Runner *projections.Runner
	// Processes run the checkout process and the simulated payment
	// gateway (see [App.Run]); their log followers are the projections
	// process:checkout and process:payment-gateway.
	Processes []*pgprocess.Runner

	cfg Config
	log *slog.Logger

	mu            sync.Mutex
	processHealth map[string]projections.WorkerStatus // of the process runners' log followers
}

// Projections are the PostgreSQL projections.
func Projections() []pgsink.Rebuildable {
	return []pgsink.Rebuildable{readmodel.OrderViews{}, readmodel.OrdersByProduct{}}
}

// New migrates the store and the sink, creates the read models' tables and
// index and the table of idempotency keys if they are missing and wires
// the bus and the API. It fails fast
// when a database is unreachable.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Pool == nil {
		return nil, errors.New("app: Config.Pool is required")
	}
	cfg.Schema = cmp.Or(cfg.Schema, SchemaDefault)
	cfg.SearchOff = cmp.Or(cfg.SearchOff, SearchOffDefault)
	log := cmp.Or(cfg.Logger, slog.Default())
	if cfg.Worker.Logger == nil {
		cfg.Worker.Logger = log
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.Worker.TracerProvider == nil {
		cfg.Worker.TracerProvider = cfg.TracerProvider
	}
	if cfg.Worker.MeterProvider == nil {
		cfg.Worker.MeterProvider = cfg.MeterProvider
	}
	a := &App{Pool: cfg.Pool, Schema: cfg.Schema, Registry: orders.NewRegistry(), cfg: cfg, log: log}
	a.Store = pgstore.New(cfg.Pool, pgstore.Config{Schema: cfg.Schema, Logger: log, PollInterval: cfg.PollInterval,
		TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider})
	if _, err := a.Store.Migrate(ctx); err != nil {
		return nil, err
	}
	a.Sink = pgsink.New(cfg.Pool, pgsink.Config{Schema: cfg.Schema, Logger: log})
	if _, err := a.Sink.Migrate(ctx); err != nil {
		return nil, err
	}
	for _, p := range Projections() {
		if _, err := a.Sink.EnsureTables(ctx, p); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
	}
	if err := pgprocess.Migrate(ctx, a.Sink); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := cfg.Checkout.Validate(); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := cfg.Process.Validate(); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Repos = orders.NewRepositories(a.Store, a.Registry)
	a.Bus = cqrs.NewBus()
	a.Bus.Use(cqrs.Tracing(cqrs.TracingConfig{TracerProvider: cfg.TracerProvider}))
	a.Bus.Use(cqrs.Metrics(cqrs.MetricsConfig{MeterProvider: cfg.MeterProvider}))
	orders.Register(a.Bus, a.Repos)
	a.Reader = readmodel.NewReader(cfg.Pool, cfg.Schema)

	k := &keys{pool: cfg.Pool, table: pgx.Identifier{cfg.Schema, idempotencyKeys}.Sanitize()}
	if err := k.setup(ctx); err != nil {
		return nil, err
	}
	pc := cfg.Process
	if pc.Logger == nil {
		pc.Logger = log
	}
	if pc.MeterProvider == nil {
		pc.MeterProvider = cfg.MeterProvider
	}
	if pc.Worker.MeterProvider == nil {
		pc.Worker.MeterProvider = cfg.Worker.MeterProvider
	}
	if pc.Worker.TracerProvider == nil {
		pc.Worker.TracerProvider = cfg.Worker.TracerProvider
	}
	a.processHealth = map[string]projections.WorkerStatus{}
	onChange := pc.Runner.OnChange
	pc.Runner.OnChange = func(st projections.WorkerStatus) {
		a.mu.Lock()
		a.processHealth[st.Name] = st
		a.mu.Unlock()
		if onChange != nil {
			onChange(st)
		}
	}
	a.Processes = checkout.Runners(a.Store, a.Registry, a.Sink, a.Bus, cfg.Checkout, pc)
	api := httpapi.Config{Bus: a.Bus, Store: a.Store, Reader: a.Reader, Checkpoints: a.Sink, Keys: k, Checkouts: checkouts{a.Sink},
		ReadWait: cfg.ReadWait, SearchTimeout: cfg.SearchTimeout, Logger: log, SearchOffMessage: cfg.SearchOff}
	if cfg.Elastic != nil {
		a.Elastic = elasticsink.New(cfg.Elastic, a.Sink, elasticsink.Config{Logger: log, MeterProvider: cfg.MeterProvider})
		if _, err := a.Elastic.EnsureIndex(ctx, a.OrderSearch()); err != nil {
			return nil, fmt.Errorf("app: order_search index: %w", err)
		}
		if err := pgx.BeginFunc(ctx, cfg.Pool, func(tx pgx.Tx) error {
			return readmodel.OrderSearch{}.SetupState(ctx, tx, cfg.Schema)
		}); err != nil {
			return nil, fmt.Errorf("app: order_search state tables: %w", err)
		}
		a.Search = &readmodel.Search{Client: cfg.Elastic, Alias: cfg.SearchAlias}
		api.Search = a.Search
	}
	if len(cfg.KafkaBrokers) > 0 {
		kc := publish.Config(cfg.KafkaBrokers)
		kc.TransactionalIDPrefix = cmp.Or(cfg.KafkaPrefix, kc.TransactionalIDPrefix)
		if cfg.KafkaTopic != "" {
			kc.Topics[0].Name = cfg.KafkaTopic
		}
		kc.Logger = log
		kc.MeterProvider = cfg.MeterProvider
		if err := kc.Validate(); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		a.Kafka = kafkasink.New(a.Sink, kc)
	}
	a.Runner = a.newRunner()
	a.Handler = httpapi.WithHealth(traceHTTP(cfg.TracerProvider, httpapi.New(api)), a.Health)
	return a, nil
}

// newRunner returns the runner of the projection workers.
func (a *App) newRunner() *projections.Runner {
	rc := a.cfg.Runner
	if rc.Logger == nil {
		rc.Logger = a.log
	}
	r := projections.NewRunner(rc)
	r.Add(pgsink.Workers(a.Store, a.Registry, a.Sink, a.cfg.Worker, Projections()...)...)
	if a.Elastic != nil {
		r.Add(elasticsink.NewWorker(a.Store, a.Registry, a.Elastic, a.OrderSearch(), a.cfg.Worker))
	}
	if a.Kafka != nil {
		r.Add(kafkasink.NewWorker(a.Store, a.Registry, a.Kafka, publish.OrderEvents{Topic: a.cfg.KafkaTopic}, a.cfg.Worker))
	}
	return r
}

// Run runs the projection workers and the checkout's runners until ctx
// ends, and returns nil then. A projection that stalls stays stalled, and
// is reported by a.Runner's Health and GET /healthz, until an operator
// resumes it; the others keep running. It may be called once.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Runner.Run(ctx) })
	for _, r := range a.Processes {
		g.Go(func() error { return r.Run(ctx) })
	}
	return g.Wait()
}

// Health is what GET /healthz reports: the workers of a.Runner, then the
// log followers of a.Processes (process:checkout, process:payment-gateway),
// so that a stalled checkout is reported too.
func (a *App) Health() projections.Health {
	h := a.Runner.Health()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.Processes {
		st, ok := a.processHealth[r.Worker().Name()]
		if !ok {
			st = projections.WorkerStatus{Name: r.Worker().Name(), State: r.Worker().State()}
		}
		h.Workers = append(h.Workers, st)
	}
	return h
}

// checkouts reads the checkout process's rows for the API.
type checkouts struct{ sink *pgsink.Sink }

func (c checkouts) Checkout(ctx context.Context, orderID string) (checkout.View, bool, error) {
	return checkout.Read(ctx, c.sink, orderID)
}

// OrderSearch returns the order_search projection as configured.
func (a *App) OrderSearch() readmodel.OrderSearch {
	return readmodel.OrderSearch{Alias: a.cfg.SearchAlias}
}

// ProjectionNames lists the projections of a.Runner; the log followers of
// a.Processes are not among them.
func (a *App) ProjectionNames() []string {
	names := []string{readmodel.OrderViewName, readmodel.OrdersByProductName}
	if a.Elastic != nil {
		names = append(names, readmodel.OrderSearchName)
	}
	if a.Kafka != nil {
		names = append(names, publish.Name)
	}
	return names
}
