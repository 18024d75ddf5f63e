package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/metric"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/pgsink"
)

// Exit codes returned by [Main].
const (
	ExitOK      = 0 // the command did what it was asked
	ExitFailed  = 1 // the operation failed
	ExitUsage   = 2 // the command line was wrong: unknown command, flag, argument or projection
	NameDefault = "strata"
)

// Config describes the application the commands run for. The zero value is
// the generic strata binary: every command that needs no application code
// works (migrate, streams, events, projections list, status, reset, pause,
// resume and dead-letters list and skip); projections run, rebuild, verify
// and dead-letters retry need the application's projections, and so does a
// reset to the start that empties the projection's tables.
type Config struct {
	// Name is the binary's name, used in usage lines and error messages.
	// Defaults to "strata".
	Name string
	// Schema is the default of --schema (and STRATA_SCHEMA), the schema of
	// the event store and the checkpoints: an application whose tables are
	// in a schema of its own names it here. Defaults to pgstore's default,
	// "strata".
	Schema string
	// Projections are the application's projections kept in PostgreSQL,
	// which projections run and rebuild and dead-letters retry work on.
	Projections []Projection
	// ElasticProjections are the application's projections kept in
	// Elasticsearch (--elasticsearch-url), which projections run and
	// rebuild work on. Their checkpoints, leases and dead letters are in
	// PostgreSQL with the others', so every other command sees them too.
	ElasticProjections []ElasticProjection
	// Elasticsearch configures the sink of ElasticProjections. The zero
	// value works; Logger defaults to the command's logger.
	Elasticsearch elasticsink.Config
	// KafkaProjections are the application's projections that publish
	// integration events to Kafka (--kafka-brokers), which projections
	// run works on and projections rebuild and reset publish again with
	// --republish. Their state, leases and dead letters are in PostgreSQL
	// with the others', so every other command sees them too.
	KafkaProjections []KafkaProjection
	// Kafka configures the sink of KafkaProjections. The zero value works:
	// Brokers defaults to --kafka-brokers (STRATA_KAFKA_BROKERS), and
	// Logger to the command's logger.
	Kafka kafkasink.Config
	// Registry decodes events for the projections. Defaults to an empty
	// registry.
	Registry *es.Registry
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Getenv reads the environment (STRATA_DATABASE_URL and friends).
	// Defaults to os.Getenv.
	Getenv func(string) string
	// IsTerminal reports whether w is a terminal: tables and a redrawn
	// progress bar there, plain lines elsewhere. Defaults to a check of the
	// file descriptor when w is an *os.File.
	IsTerminal func(w io.Writer) bool
}

// Projection is a projection of the application, kept in PostgreSQL by
// projections/pgsink.
type Projection struct {
	// Projection is run by projections run. When it is a
	// [pgsink.Rebuildable], projections rebuild can build it anew.
	Projection projections.Projection[*pgsink.Tx]
	// Worker configures its worker. The zero value works; the --on-error
	// flag of projections run overrides ErrorPolicy, and Logger defaults to
	// the command's logger.
	Worker projections.Config
}

func (p Projection) name() string { return p.Projection.Name() }

// ElasticProjection is a projection of the application kept in
// Elasticsearch by projections/elasticsink.
type ElasticProjection struct {
	// Projection is run by projections run (its index is created first
	// when missing) and built anew, behind its alias, by projections
	// rebuild.
	Projection elasticsink.Projection
	// Worker configures its worker, as for [Projection].
	Worker projections.Config
}

func (p ElasticProjection) name() string { return p.Projection.Name() }

// KafkaProjection is a projection of the application that publishes
// integration events to Kafka with projections/kafkasink.
type KafkaProjection struct {
	// Projection is run by projections run, and published again from the
	// start (or another position) by projections rebuild --republish and
	// projections reset --republish.
	Projection projections.Projection[*kafkasink.Tx]
	// Worker configures its worker, as for [Projection].
	Worker projections.Config
}

func (p KafkaProjection) name() string { return p.Projection.Name() }

// app is the state the commands share: the configuration and the flags.
type app struct {
	cfg   Config
	flags flags
	root  *cobra.Command
	logs  *logWriter // stderr, for the logger
	// meters is the MeterProvider of --metrics-addr, nil without it.
	meters metric.MeterProvider
}

// New returns the root command, named cfg.Name, with every command below
// it. An application mounts the commands in its own binary by building it
// with its projections and registry, adding its own commands to it, and
// running it with [Main]:
//
//	root := cli.New(cli.Config{Name: "orders", Registry: reg,
//		Projections:        []cli.Projection{{Projection: orderViews{}}},
//		ElasticProjections: []cli.ElasticProjection{{Projection: orderSearch{}}},
//		KafkaProjections:   []cli.KafkaProjection{{Projection: orderEvents{}}},
//		Kafka:              kafkasink.Config{Topics: []kafkasink.Topic{{Name: "orders.v1"}}}})
//	root.AddCommand(serveCmd)
//	os.Exit(cli.Main(context.Background(), root, os.Args[1:]))
func New(cfg Config) *cobra.Command {
	cfg.Name = cmp.Or(cfg.Name, NameDefault)
	cfg.Schema = cmp.Or(cfg.Schema, pgstore.SchemaDefault)
	if cfg.Registry == nil {
		cfg.Registry = es.NewRegistry()
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.IsTerminal == nil {
		cfg.IsTerminal = isTerminal
	}
	if err := cfg.Elasticsearch.Validate(); err != nil {
		panic(fmt.Sprintf("cli: New: Config.Elasticsearch: %v", err))
	}
	kafka := cfg.Kafka
	if len(kafka.Brokers) == 0 { // they come from --kafka-brokers: check the rest
		kafka.Brokers = []string{"--kafka-brokers"}
	}
	if err := kafka.Validate(); err != nil {
		panic(fmt.Sprintf("cli: New: Config.Kafka: %v", err))
	}
	var names []string
	for i, p := range cfg.Projections {
		if p.Projection == nil || p.Projection.Name() == "" {
			panic(fmt.Sprintf("cli: New: Config.Projections[%d] has no projection or no name", i))
		}
		names = append(names, p.name())
	}
	for i, p := range cfg.ElasticProjections {
		if p.Projection == nil || p.Projection.Name() == "" {
			panic(fmt.Sprintf("cli: New: Config.ElasticProjections[%d] has no projection or no name", i))
		}
		names = append(names, p.name())
	}
	for i, p := range cfg.KafkaProjections {
		if p.Projection == nil || p.Projection.Name() == "" {
			panic(fmt.Sprintf("cli: New: Config.KafkaProjections[%d] has no projection or no name", i))
		}
		names = append(names, p.name())
	}
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			panic(fmt.Sprintf("cli: New: projection %q is registered twice", n))
		}
	}
	a := &app{cfg: cfg, logs: &logWriter{w: cfg.Stderr}}
	a.root = a.rootCommand()
	return a.root
}

func (a *app) rootCommand() *cobra.Command {
	name := a.cfg.Name
	root := &cobra.Command{
		Use:   name,
		Short: "Inspect the event store and run, watch and rebuild projections",
		Long: `Inspect the event store and run, watch and rebuild projections.

The event store and the projections' checkpoints live in PostgreSQL
(--database-url or STRATA_DATABASE_URL). With --esdb-url or STRATA_ESDB_URL
the events are read from EventStoreDB or KurrentDB instead; checkpoints stay
in PostgreSQL.

Exit codes: 0 success, 1 the operation failed, 2 usage error.`,
		Example: fmt.Sprintf(`  export STRATA_DATABASE_URL=postgres://app@localhost:5432/app
  %[1]s migrate
  %[1]s projections status --watch`, name),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          helpRun,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.flags.resolve(a.cfg.Getenv)
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetOut(a.cfg.Stdout)
	root.SetErr(a.cfg.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageErr(err) })
	a.flags.register(root, a)
	root.AddCommand(a.migrateCommand(), a.streamsCommand(), a.eventsCommand(), a.projectionsCommand(), a.consumersCommand(),
		a.processesCommand())
	return root
}

// Main runs root (usually from [New]) with args, prints an error, if any,
// on one line of root's error output (with detail under --verbose) and
// returns the exit code: [ExitOK], [ExitFailed] or [ExitUsage]. The first
// SIGINT or SIGTERM cancels ctx, which long-running commands (projections
// run, rebuild, status --watch, events tail) take as the request to stop
// cleanly; a second one kills the process.
func Main(ctx context.Context, root *cobra.Command, args []string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetArgs(args)
	w := root.ErrOrStderr()
	name := root.Name()
	tracing, err := startGlobalTracing(ctx, name, w)
	if err != nil {
		fmt.Fprintf(w, "%s: %s\n", name, oneLine(err))
		return ExitUsage
	}
	cmd, err := root.ExecuteContextC(ctx)
	tracing()
	if err == nil {
		return ExitOK
	}
	if cmd == nil {
		cmd = root
	}
	verbose, _ := root.PersistentFlags().GetBool("verbose")
	fmt.Fprintf(w, "%s: %s\n", name, oneLine(err))
	if verbose {
		for _, d := range detail(err) {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(strings.TrimSpace(d), "\n", "\n  "))
		}
	}
	if isUsage(err) {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitFailed
}

// usageError marks a wrong command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErr(err error) error { return &usageError{err} }

func usagef(format string, args ...any) error { return usageErr(fmt.Errorf(format, args...)) }

func isUsage(err error) bool {
	var u *usageError
	if errors.As(err, &u) {
		return true
	}
	// Errors cobra makes itself before a command runs.
	msg := err.Error()
	for _, p := range []string{"unknown command ", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// oneLine returns err's message on one line.
func oneLine(err error) string {
	var c *connectError
	if errors.As(err, &c) {
		return c.short()
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Argument validators that return usage errors.

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s wants %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s wants %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func minArgs(lo int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo {
			return usagef("%s wants %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

// helpRun is the RunE of commands that only group others: it prints help.
func helpRun(cmd *cobra.Command, args []string) error { return cmd.Help() }

// group returns a command that only holds subcommands.
func group(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Example: example, Args: noArgs, RunE: helpRun}
	c.AddCommand(subs...)
	return c
}

// registered returns the registered projection of that name.
func (a *app) registered(name string) (Projection, bool) {
	i := slices.IndexFunc(a.cfg.Projections, func(p Projection) bool { return p.name() == name })
	if i < 0 {
		return Projection{}, false
	}
	return a.cfg.Projections[i], true
}

// registeredElastic returns the registered Elasticsearch projection of
// that name.
func (a *app) registeredElastic(name string) (ElasticProjection, bool) {
	i := slices.IndexFunc(a.cfg.ElasticProjections, func(p ElasticProjection) bool { return p.name() == name })
	if i < 0 {
		return ElasticProjection{}, false
	}
	return a.cfg.ElasticProjections[i], true
}

// registeredKafka returns the registered Kafka projection of that name.
func (a *app) registeredKafka(name string) (KafkaProjection, bool) {
	i := slices.IndexFunc(a.cfg.KafkaProjections, func(p KafkaProjection) bool { return p.name() == name })
	if i < 0 {
		return KafkaProjection{}, false
	}
	return a.cfg.KafkaProjections[i], true
}

// Kinds of projections, as projections list shows them.
const (
	kindPostgres = "postgres"
	kindElastic  = "elasticsearch"
	kindKafka    = "kafka"
)

// kind returns the kind of the registered projection name, or "" when
// this binary does not register it.
func (a *app) kind(name string) string {
	if _, ok := a.registered(name); ok {
		return kindPostgres
	}
	if _, ok := a.registeredElastic(name); ok {
		return kindElastic
	}
	if _, ok := a.registeredKafka(name); ok {
		return kindKafka
	}
	return ""
}

func (a *app) registeredNames() []string {
	names := make([]string, 0, len(a.cfg.Projections)+len(a.cfg.ElasticProjections)+len(a.cfg.KafkaProjections))
	for _, p := range a.cfg.Projections {
		names = append(names, p.name())
	}
	for _, p := range a.cfg.ElasticProjections {
		names = append(names, p.name())
	}
	for _, p := range a.cfg.KafkaProjections {
		names = append(names, p.name())
	}
	slices.Sort(names)
	return names
}

// unknownRegistered is the error for a projection this binary does not
// have, for the commands that need its code.
func (a *app) unknownRegistered(name string) error {
	known := a.registeredNames()
	if len(known) == 0 {
		return usagef("unknown projection %q: this binary has no projections registered; "+
			"applications mount these commands in their own binary with their projections (see cli.New)", name)
	}
	return usagef("unknown projection %q; known projections: %s", name, strings.Join(known, ", "))
}
