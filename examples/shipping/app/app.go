// Package app wires the shipping service together: its own event store and
// command bus, the two Kafka consumers of the order service's integration
// events (its copy of the orders, and the commands the events call for),
// the projection of its own log, and its read API.
//
//	a, err := app.New(ctx, app.Config{Pool: pool, Brokers: []string{"127.0.0.1:9092"}})
//	go a.Run(ctx) // the consumers and the projection worker, until ctx ends
//	http.ListenAndServe(addr, a.Handler)
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/examples/orders/contract"
	"github.com/stratadev/strata/examples/shipping"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/pgsink"
)

// Defaults for [Config].
const (
	SchemaDefault = "shipping"
	// The consumer groups: each consumer of the order events is a group of
	// its own, so each gets every message.
	CopyGroupDefault     = "shipping.order-copy"
	CommandsGroupDefault = "shipping.shipments"
)

// Config configures an [App]. Pool and Brokers are required.
type Config struct {
	// Pool is the service's PostgreSQL database. The caller owns it.
	Pool *pgxpool.Pool
	// Schema holds all of the service's tables: its event store, its
	// checkpoints, its read models and its consumers' offsets. Defaults to
	// "shipping", so that it shares no table with the order service even
	// in the same database.
	Schema string
	// Brokers are the Kafka cluster's bootstrap addresses. Required.
	Brokers []string
	// ClientOptions are added to every Kafka client (TLS, SASL).
	ClientOptions []kgo.Opt
	// Topic is the order service's topic. Defaults to contract.Topic.
	Topic string
	// CopyGroup and CommandsGroup are the consumer groups. Default to
	// CopyGroupDefault and CommandsGroupDefault.
	CopyGroup, CommandsGroup string
	// Worker configures the shipments projection's worker.
	Worker projections.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// App is the service's running parts.
type App struct {
	Pool     *pgxpool.Pool
	Schema   string
	Store    *pgstore.Store
	Registry *es.Registry
	Bus      *cqrs.Bus
	Sink     *pgsink.Sink
	// Copy keeps the service's copy of the orders (shipping_orders);
	// Commands turns order events into shipment commands.
	Copy     *consume.ReadModel
	Commands *consume.Commands
	// Handler serves GET /shipments/{order_id} and GET /healthz.
	Handler http.Handler

	cfg Config
	log *slog.Logger
}

// New migrates the service's schema, creates its tables and the consumers'
// dead-letter topics if they are missing, and wires the consumers and the
// API. It fails fast when PostgreSQL or Kafka is unreachable.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Pool == nil {
		return nil, errors.New("shipping app: Config.Pool is required")
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("shipping app: Config.Brokers is required: the service learns about orders only from Kafka")
	}
	cfg.Schema = cmp.Or(cfg.Schema, SchemaDefault)
	cfg.Topic = cmp.Or(cfg.Topic, contract.Topic)
	cfg.CopyGroup = cmp.Or(cfg.CopyGroup, CopyGroupDefault)
	cfg.CommandsGroup = cmp.Or(cfg.CommandsGroup, CommandsGroupDefault)
	log := cmp.Or(cfg.Logger, slog.Default())
	if cfg.Worker.Logger == nil {
		cfg.Worker.Logger = log
	}
	a := &App{Pool: cfg.Pool, Schema: cfg.Schema, Registry: shipping.NewRegistry(), cfg: cfg, log: log}
	a.Store = pgstore.New(cfg.Pool, pgstore.Config{Schema: cfg.Schema, Logger: log})
	if _, err := a.Store.Migrate(ctx); err != nil {
		return nil, err
	}
	a.Sink = pgsink.New(cfg.Pool, pgsink.Config{Schema: cfg.Schema, Logger: log})
	if _, err := a.Sink.Migrate(ctx); err != nil {
		return nil, err
	}
	if _, err := a.Sink.EnsureTables(ctx, shipping.Shipments{}); err != nil {
		return nil, fmt.Errorf("shipping app: %w", err)
	}
	if err := consume.Migrate(ctx, cfg.Pool, cfg.Schema, log); err != nil {
		return nil, err
	}
	if _, err := cfg.Pool.Exec(ctx, shipping.OrderCopyDDL(cfg.Schema)); err != nil {
		return nil, fmt.Errorf("shipping app: create %s: %w", shipping.OrderCopyTable, err)
	}
	if err := a.ensureDeadLetterTopics(ctx); err != nil {
		return nil, err
	}
	a.Bus = shipping.NewBus(a.Store, a.Registry)

	base := consume.Config{
		Brokers: cfg.Brokers, ClientOptions: cfg.ClientOptions, Topics: []string{cfg.Topic},
		Pool: cfg.Pool, Schema: cfg.Schema, ErrorPolicy: projections.PolicyDeadLetter, Logger: log,
	}
	copyCfg := base
	copyCfg.Group = cfg.CopyGroup
	var err error
	a.Copy, err = consume.NewReadModel(copyCfg, consume.HandlerFunc(a.applyToCopy))
	if err != nil {
		return nil, err
	}
	cmdCfg := base
	cmdCfg.Group = cfg.CommandsGroup
	a.Commands, err = consume.NewCommands(cmdCfg, a.Bus, toCommand)
	if err != nil {
		return nil, err
	}
	a.Handler = a.routes()
	return a, nil
}

// applyToCopy applies a batch of order events to the copy. A message the
// copy cannot take (an unknown type, undecodable data) is a bad message:
// it goes to the dead-letter topic and the rest of the batch is applied.
func (a *App) applyToCopy(ctx context.Context, tx pgx.Tx, msgs []consume.Message) error {
	for _, m := range msgs {
		err := shipping.ApplyToCopy(ctx, tx, a.Schema, m.Envelope.Type, m.Value, m.Envelope.Time)
		if err != nil && isBadInput(err) {
			return consume.BadMessage(m, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// toCommand maps an order event to its shipment command; events that call
// for none make no command.
func toCommand(_ context.Context, m consume.Message) (any, error) {
	cmd, ok, err := shipping.ToCommand(m.Envelope.Type, m.Value, m.CommandID())
	if err != nil || !ok {
		return nil, err
	}
	return cmd, nil
}

// isBadInput reports whether err is about the message rather than the
// database: an unknown type or data that does not decode.
func isBadInput(err error) bool {
	return errors.Is(err, shipping.ErrUnknownType) || errors.Is(err, shipping.ErrBadEvent)
}

// ensureDeadLetterTopics creates the consumers' dead-letter topics when
// they are missing, with the broker's default partitions and replicas.
func (a *App) ensureDeadLetterTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.cfg.Brokers...)}, a.cfg.ClientOptions...)...)
	if err != nil {
		return fmt.Errorf("shipping app: kafka client: %w", err)
	}
	defer cl.Close()
	topics := []string{a.cfg.CopyGroup + consume.DeadLetterSuffixDefault, a.cfg.CommandsGroup + consume.DeadLetterSuffixDefault}
	res, err := kadm.NewClient(cl).CreateTopics(ctx, -1, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("shipping app: create the dead-letter topics %v: %w", topics, err)
	}
	for _, r := range res.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("shipping app: create the dead-letter topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Run runs the consumers and the shipments projection's worker until ctx
// ends or one of them stops for good.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Copy.Run(ctx) })
	g.Go(func() error { return a.Commands.Run(ctx) })
	g.Go(func() error {
		return pgsink.NewWorker(a.Store, a.Registry, a.Sink, shipping.Shipments{}, a.cfg.Worker).Run(ctx)
	})
	return g.Wait()
}
