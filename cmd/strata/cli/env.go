package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/esdbstore"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/pgsink"
)

// Environment variables read when the matching flag is not given.
const (
	EnvDatabaseURL      = "STRATA_DATABASE_URL"
	EnvESDBURL          = "STRATA_ESDB_URL"
	EnvElasticsearchURL = "STRATA_ELASTICSEARCH_URL"
	EnvKafkaBrokers     = "STRATA_KAFKA_BROKERS"
	EnvSchema           = "STRATA_SCHEMA"
)

// connectTimeout bounds the first connection, so that an unreachable
// database fails fast.
const connectTimeout = 10 * time.Second

type flags struct {
	databaseURL, esdbURL, elasticURL string
	schema, readSchema               string
	kafkaBrokers                     []string
	output                           string
	verbose                          bool

	cmd *cobra.Command // the root, to see which flags were set
}

func (f *flags) register(root *cobra.Command, a *app) {
	f.cmd = root
	pf := root.PersistentFlags()
	pf.Var(&appValue{s: &f.databaseURL, app: a}, "database-url", "PostgreSQL URL of the event store and the checkpoints (env "+EnvDatabaseURL+")")
	pf.StringVar(&f.esdbURL, "esdb-url", "", "EventStoreDB/KurrentDB connection string: read events from there; checkpoints stay in PostgreSQL (env "+EnvESDBURL+")")
	pf.StringVar(&f.elasticURL, "elasticsearch-url", "", "Elasticsearch URL for the application's Elasticsearch projections (env "+EnvElasticsearchURL+")")
	pf.StringSliceVar(&f.kafkaBrokers, "kafka-brokers", nil, "Kafka bootstrap addresses, comma-separated, for the application's Kafka projections and the liveness of its consumers (env "+EnvKafkaBrokers+")")
	pf.StringVar(&f.schema, "schema", a.cfg.Schema, "PostgreSQL schema of the event store and the checkpoints (env "+EnvSchema+")")
	pf.StringVar(&f.readSchema, "read-schema", "", "PostgreSQL schema of the read-model tables (default: --schema)")
	pf.StringVarP(&f.output, "output", "o", "", "output format: table, json or lines (default: table on a terminal, lines otherwise)")
	pf.BoolVarP(&f.verbose, "verbose", "v", false, "log what happens and print the detail of errors")
	if err := root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "lines"}, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		panic(err) // the flag is defined just above
	}
}

// resolve fills in what the flags left unset from the environment, and
// checks the values. An error names the flag, or the environment variable
// the value came from.
func (f *flags) resolve(getenv func(string) string) error {
	source := map[string]string{} // flag -> where its value came from
	fill := func(v *string, flag, env string) {
		source[flag] = "--" + flag
		if !f.cmd.PersistentFlags().Changed(flag) {
			if e := getenv(env); e != "" {
				*v, source[flag] = e, env
			}
		}
	}
	fill(&f.databaseURL, "database-url", EnvDatabaseURL)
	fill(&f.esdbURL, "esdb-url", EnvESDBURL)
	fill(&f.elasticURL, "elasticsearch-url", EnvElasticsearchURL)
	fill(&f.schema, "schema", EnvSchema)
	source["kafka-brokers"] = "--kafka-brokers"
	if !f.cmd.PersistentFlags().Changed("kafka-brokers") {
		if e := getenv(EnvKafkaBrokers); e != "" {
			f.kafkaBrokers, source["kafka-brokers"] = strings.Split(e, ","), EnvKafkaBrokers
		}
	}
	for i, b := range f.kafkaBrokers {
		f.kafkaBrokers[i] = strings.TrimSpace(b)
		if f.kafkaBrokers[i] == "" {
			return usagef("invalid %s %q: an empty broker address; want host:port[,host:port...]", source["kafka-brokers"], strings.Join(f.kafkaBrokers, ","))
		}
	}
	switch f.output {
	case "", "table", "json", "lines":
	default:
		return usagef("invalid argument %q for --output: want table, json or lines", f.output)
	}
	for _, s := range []struct{ name, value string }{{source["schema"], f.schema}, {"--read-schema", f.readSchema}} {
		if err := (pgsink.Config{Schema: s.value}).Validate(); err != nil {
			return usagef("invalid %s %q: a schema name is at most 63 bytes of UTF-8 without NUL", s.name, s.value)
		}
	}
	if f.databaseURL != "" {
		if _, err := pgxpool.ParseConfig(f.databaseURL); err != nil {
			return usagef("invalid %s: %s", source["database-url"], redactParseError(err))
		}
	}
	return nil
}

// Settings are the connection settings the commands resolved from the
// root's persistent flags, then the environment (as [Config.Getenv] reads
// it), then the flags' defaults. An application's own commands read them
// with [ReadSettings].
type Settings struct {
	// DatabaseURL is --database-url, or STRATA_DATABASE_URL; empty when
	// neither is set.
	DatabaseURL string
	// ESDBURL is --esdb-url, or STRATA_ESDB_URL; empty when the events live
	// in PostgreSQL.
	ESDBURL string
	// ElasticsearchURL is --elasticsearch-url, or STRATA_ELASTICSEARCH_URL;
	// empty when neither is set.
	ElasticsearchURL string
	// KafkaBrokers are the Kafka bootstrap addresses: --kafka-brokers, or
	// STRATA_KAFKA_BROKERS, comma-separated; nil when neither is set.
	KafkaBrokers []string
	// Schema holds the event store and the checkpoints: --schema, or
	// STRATA_SCHEMA. Defaults to Config.Schema, else pgstore.SchemaDefault
	// ("strata").
	Schema string
	// ReadSchema holds the read-model tables: --read-schema. Defaults to
	// Schema.
	ReadSchema string
}

// ErrNotMounted is returned by [ReadSettings] for a command that is not
// below a root made by [New].
var ErrNotMounted = errors.New("cli: the command is not below a root made by cli.New")

// ReadSettings returns the settings resolved for cmd, a command below the
// root that [New] made: an application's own command, such as serve, next
// to the mounted ones, so that it connects where they do:
//
//	RunE: func(cmd *cobra.Command, _ []string) error {
//		s, err := cli.ReadSettings(cmd)
//		if err != nil {
//			return err
//		}
//		if s.DatabaseURL == "" {
//			return fmt.Errorf("no database: set --database-url or %s", cli.EnvDatabaseURL)
//		}
//		pool, err := pgxpool.New(cmd.Context(), s.DatabaseURL)
//		...
//	}
//
// A flag given on the command line wins over its environment variable,
// which wins over the flag's default. A bad value is an error that names
// the flag. It fails with [ErrNotMounted] when cmd is not below such a root.
func ReadSettings(cmd *cobra.Command) (Settings, error) {
	f := cmd.Root().PersistentFlags().Lookup("database-url")
	if f == nil {
		return Settings{}, ErrNotMounted
	}
	v, ok := f.Value.(*appValue)
	if !ok {
		return Settings{}, ErrNotMounted
	}
	a := v.app
	if err := a.flags.resolve(a.cfg.Getenv); err != nil {
		return Settings{}, err
	}
	return a.settings(), nil
}

// appValue is the value of --database-url: a string flag that also leads
// [ReadSettings] from any command of the tree to the app that made it.
type appValue struct {
	s   *string
	app *app
}

func (v *appValue) String() string {
	if v.s == nil {
		return ""
	}
	return *v.s
}
func (v *appValue) Set(s string) error { *v.s = s; return nil }
func (v *appValue) Type() string       { return "string" }

func (a *app) settings() Settings {
	f := a.flags
	rs := f.readSchema
	if rs == "" {
		rs = f.schema
	}
	return Settings{DatabaseURL: f.databaseURL, ESDBURL: f.esdbURL, ElasticsearchURL: f.elasticURL,
		KafkaBrokers: slices.Clone(f.kafkaBrokers), Schema: f.schema, ReadSchema: rs}
}

// logger logs to stderr: warnings and errors, and everything with --verbose;
// a record logged inside a span carries its trace_id and span_id.
// A progress bar on a terminal is cleared before each log line and drawn
// again after it (see logWriter).
func (a *app) logger() *slog.Logger {
	level := slog.LevelWarn
	if a.flags.verbose {
		level = slog.LevelDebug
	}
	return slog.New(cqrs.TraceLogHandler(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: level})))
}

// errNoKafka is the error of a command that needs Kafka brokers when none
// are configured.
var errNoKafka = usagef("no Kafka brokers: set --kafka-brokers or %s (host:port, comma-separated)", EnvKafkaBrokers)

// needKafka fails with errNoKafka, before anything is opened, when a
// command that works on a Kafka projection has no brokers.
func (a *app) needKafka() error {
	if len(a.cfg.Kafka.Brokers) == 0 && len(a.flags.kafkaBrokers) == 0 {
		return errNoKafka
	}
	return nil
}

// conn holds what a command works with. The PostgreSQL pool is always
// there, for the checkpoints; the events come from pg or from esdb.
type conn struct {
	pool  *pgxpool.Pool
	sink  *pgsink.Sink
	store es.Store
	pg    *pgstore.Store   // nil when the events live in EventStoreDB
	esdb  *esdbstore.Store // nil when they live in PostgreSQL
	url   string           // the database URL without its password
	log   *slog.Logger

	elasticURL       string
	elasticCfg       elasticsink.Config
	elastic          *elasticsink.Sink // made by elasticSink
	elasticTransport *http.Transport

	kafkaCfg kafkasink.Config
	kafka    *kafkasink.Sink // made by kafkaSink
}

// kafkaSink returns the sink of Kafka projections, made on first use (it
// does no I/O until a projection starts). Its brokers are Config.Kafka's,
// else --kafka-brokers.
func (c *conn) kafkaSink() (*kafkasink.Sink, error) {
	if c.kafka != nil {
		return c.kafka, nil
	}
	cfg := c.kafkaCfg
	if len(cfg.Brokers) == 0 {
		return nil, errNoKafka
	}
	if cfg.Logger == nil {
		cfg.Logger = c.log
	}
	c.kafka = kafkasink.New(c.sink, cfg)
	return c.kafka, nil
}

// elasticSink returns the sink of Elasticsearch projections, making its
// client on first use.
func (c *conn) elasticSink() (*elasticsink.Sink, error) {
	if c.elastic != nil {
		return c.elastic, nil
	}
	if c.elasticURL == "" {
		return nil, usagef("no Elasticsearch: set --elasticsearch-url or %s", EnvElasticsearchURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{c.elasticURL}, Transport: tr})
	if err != nil {
		return nil, usagef("invalid Elasticsearch URL %s: %v", redactURL(c.elasticURL), err)
	}
	cfg := c.elasticCfg
	if cfg.Logger == nil {
		cfg.Logger = c.log
	}
	c.elastic, c.elasticTransport = elasticsink.New(client, c.sink, cfg), tr
	return c.elastic, nil
}

func (c *conn) close() {
	if c.kafka != nil {
		c.kafka.Close()
	}
	if c.elasticTransport != nil {
		c.elasticTransport.CloseIdleConnections()
	}
	if c.esdb != nil {
		c.esdb.Close()
	}
	c.pool.Close()
}

// connect opens the database (and EventStoreDB when asked), failing fast
// with an error that names the URL without its password.
func (a *app) connect(ctx context.Context) (*conn, error) {
	s := a.settings()
	if s.DatabaseURL == "" {
		return nil, usagef("no database: set --database-url or %s", EnvDatabaseURL)
	}
	cfg, err := pgxpool.ParseConfig(s.DatabaseURL)
	if err != nil {
		return nil, usagef("invalid database URL: %s", redactParseError(err))
	}
	cfg.ConnConfig.ConnectTimeout = min(cmpNonZero(cfg.ConnConfig.ConnectTimeout, connectTimeout), connectTimeout)
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = a.cfg.Name
	}
	display := displayURL(&cfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &connectError{url: display, err: err}
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &connectError{url: display, err: err}
	}
	log := a.logger()
	c := &conn{pool: pool, url: display, log: log, elasticURL: s.ElasticsearchURL, elasticCfg: a.cfg.Elasticsearch, kafkaCfg: a.cfg.Kafka}
	if len(c.kafkaCfg.Brokers) == 0 {
		c.kafkaCfg.Brokers = s.KafkaBrokers
	}
	// --metrics-addr measures the sinks too, unless the application's
	// configs name a MeterProvider of their own.
	if a.meters != nil {
		if c.kafkaCfg.MeterProvider == nil {
			c.kafkaCfg.MeterProvider = a.meters
		}
		if c.elasticCfg.MeterProvider == nil {
			c.elasticCfg.MeterProvider = a.meters
		}
	}
	c.sink = pgsink.New(pool, pgsink.Config{Schema: s.Schema, ReadSchema: s.ReadSchema, Logger: log})
	if s.ESDBURL != "" {
		st, err := esdbstore.Open(ctx, esdbstore.Config{ConnectionString: s.ESDBURL, Logger: log})
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("cannot connect to EventStoreDB %s: %w", redactURL(s.ESDBURL), err)
		}
		c.esdb, c.store = st, st
	} else {
		c.pg = pgstore.New(pool, pgstore.Config{Schema: s.Schema, Logger: log, MeterProvider: a.meters})
		c.store = c.pg
	}
	return c, nil
}

func cmpNonZero(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// connectError is a failure to reach the database.
type connectError struct {
	url string
	err error
}

func (e *connectError) Error() string { return fmt.Sprintf("cannot connect to %s: %v", e.url, e.err) }
func (e *connectError) Unwrap() error { return e.err }

// short says what went wrong in a few words: "connection refused",
// "password authentication failed for user x", "no such host".
func (e *connectError) short() string {
	return fmt.Sprintf("cannot connect to %s: %s", e.url, rootCause(e.err))
}

func rootCause(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "no such host " + dnsErr.Name
	}
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		return sysErr.Err.Error()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return "timed out after " + connectTimeout.String()
	}
	return err.Error()
}

// displayURL renders a connection config as a URL without the password.
func displayURL(c *pgconn.Config) string {
	u := url.URL{Scheme: "postgres", Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	host := c.Host
	if len(host) > 0 && host[0] == '/' { // a Unix socket directory
		u.Host = ""
		q := url.Values{"host": {host}}
		if c.Port != 0 && c.Port != 5432 {
			q.Set("port", strconv.Itoa(int(c.Port)))
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	return u.String()
}

// redactURL drops the password of a URL, if it parses as one.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(the configured URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// redactParseError returns pgx's parse error, which already masks
// passwords, in one line.
func redactParseError(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}

// detail lists what --verbose adds to an error's line: the whole chain and
// PostgreSQL's detail and hint.
func detail(err error) []string {
	var out []string
	var c *connectError
	if errors.As(err, &c) {
		out = append(out, "error: "+c.err.Error())
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		out = append(out, fmt.Sprintf("postgres: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code))
		if pgErr.Detail != "" {
			out = append(out, "detail: "+pgErr.Detail)
		}
		if pgErr.Hint != "" {
			out = append(out, "hint: "+pgErr.Hint)
		}
		if pgErr.Where != "" {
			out = append(out, "where: "+pgErr.Where)
		}
	}
	return out
}

// explain turns "relation does not exist" into advice.
func (a *app) explain(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.UndefinedTable || pgErr.Code == pgerrcode.InvalidSchemaName) {
		return fmt.Errorf("schema %q has no strata tables: run '%s migrate' first (%w)", a.flags.schema, a.cfg.Name, err)
	}
	return err
}
