package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/kafkasink"
	"github.com/stratadev/strata/projections/pgsink"
)

func (a *app) runCommand() *cobra.Command {
	var onError, metricsAddr string
	cmd := &cobra.Command{
		Use:   "run [name...]",
		Short: "Run projection workers in the foreground until interrupted",
		Long: `Run the workers of the named projections (default: every projection this
binary registers) until SIGINT or SIGTERM; then finish the batch in flight
and exit 0. Workers of the same projection in other processes take turns
through a lease: a second 'run' stands by and takes over when the first
stops. A projection whose tables do not exist yet gets them created first
(when it is a pgsink.Rebuildable); an Elasticsearch projection gets its
index created behind its alias (--elasticsearch-url); a Kafka projection
publishes to the brokers of --kafka-brokers, each batch and its checkpoint
in one Kafka transaction.

A projection that stalls on an event it cannot handle stops, and the others
go on; a projection that is stalled already does not keep the others from
starting. Once the cause is fixed, 'projections resume' (from any shell)
starts the stalled projection's worker again in this process. A worker that
fails for another reason is started again after a backoff. When
interrupted, the command exits 1 if a projection is stalled (or failing)
then. With --on-error dead-letter such events are parked instead (see
'projections dead-letters').

A Kafka projection whose producer is fenced (another worker of it started
a producer after this one) is not started again in a way that fences that
worker back: when the other worker holds the projection's lease, this one
stands by; when nobody here holds it (a process with another --schema or
database publishes it with the same transactional ID), this process stops
running it, says so, and exits 1 when interrupted.

With --metrics-addr it serves the workers' and the event store's metrics
for Prometheus at http://ADDR/metrics while it runs (strata_projection_lag,
strata_projection_events_applied_total and more: see
docs/observability.md in the strata repository).`,
		Example: fmt.Sprintf(`  %[1]s projections run
  %[1]s projections run order_view product_search
  %[1]s projections run --on-error dead-letter
  %[1]s projections run --metrics-addr 127.0.0.1:9464`, a.cfg.Name),
		ValidArgsFunction: a.completeProjections,
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := parsePolicy(onError)
			if err != nil {
				return err
			}
			sel, err := a.selectProjections(args)
			if err != nil {
				return err
			}
			if len(sel.kafka) > 0 {
				if err := a.needKafka(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			stop, err := a.startMetrics(metricsAddr)
			if err != nil {
				return err
			}
			defer stop()
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			return a.run(ctx, c, sel, policy)
		},
	}
	cmd.Flags().StringVar(&onError, "on-error", "", "what to do with an event a projection cannot handle: stop or dead-letter (default: as the application configured, else stop)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (default: off)")
	return cmd
}

// selection is the registered projections a command works on.
type selection struct {
	pg      []Projection
	elastic []ElasticProjection
	kafka   []KafkaProjection
}

// selectProjections returns the registered projections of those names, or
// all of them.
func (a *app) selectProjections(names []string) (selection, error) {
	if len(a.cfg.Projections)+len(a.cfg.ElasticProjections)+len(a.cfg.KafkaProjections) == 0 {
		what := "any projection"
		if len(names) > 0 {
			what = fmt.Sprintf("%q", names[0])
		}
		return selection{}, usagef("cannot run %s: this binary has no projections registered; "+
			"applications mount these commands in their own binary with their projections (see cli.New)", what)
	}
	if len(names) == 0 {
		return selection{pg: a.cfg.Projections, elastic: a.cfg.ElasticProjections, kafka: a.cfg.KafkaProjections}, nil
	}
	var sel selection
	for _, n := range names {
		if p, ok := a.registered(n); ok {
			sel.pg = append(sel.pg, p)
		} else if p, ok := a.registeredElastic(n); ok {
			sel.elastic = append(sel.elastic, p)
		} else if p, ok := a.registeredKafka(n); ok {
			sel.kafka = append(sel.kafka, p)
		} else {
			return selection{}, a.unknownRegistered(n)
		}
	}
	return sel, nil
}

// worker is a projections.Worker of either sink.
type worker interface {
	projections.Runnable
	Applied() int64
}

func (a *app) run(ctx context.Context, c *conn, sel selection, policy *projections.ErrorPolicy) error {
	w := a.stdout()
	for _, p := range sel.pg {
		created, err := a.setupTables(ctx, c, p)
		if err != nil {
			return a.explain(err)
		}
		if created {
			fmt.Fprintf(w, "created the tables of %s\n", p.name())
		}
	}
	var esSink *elasticsink.Sink
	if len(sel.elastic) > 0 {
		var err error
		if esSink, err = c.elasticSink(); err != nil {
			return err
		}
	}
	var kSink *kafkasink.Sink
	if len(sel.kafka) > 0 {
		var err error
		if kSink, err = c.kafkaSink(); err != nil {
			return err
		}
	}
	for _, p := range sel.elastic {
		if _, err := esSink.EnsureIndex(ctx, p.Projection); err != nil {
			return fmt.Errorf("create the index of %s: %w", p.name(), err)
		}
	}
	workerConfig := func(cfg projections.Config) projections.Config {
		if cfg.Logger == nil {
			cfg.Logger = c.log
		}
		if policy != nil {
			cfg.ErrorPolicy = *policy
		}
		if cfg.MeterProvider == nil && a.meters != nil {
			cfg.MeterProvider = a.meters
		}
		return cfg
	}
	var (
		names   []string
		workers []worker
	)
	for _, p := range sel.pg {
		names = append(names, p.name())
		workers = append(workers, pgsink.NewWorker(c.store, a.cfg.Registry, c.sink, p.Projection, workerConfig(p.Worker)))
	}
	for _, p := range sel.elastic {
		names = append(names, p.name())
		workers = append(workers, elasticsink.NewWorker(c.store, a.cfg.Registry, esSink, p.Projection, workerConfig(p.Worker)))
	}
	for _, p := range sel.kafka {
		names = append(names, p.name())
		workers = append(workers, &kafkaWorker{
			Worker: kafkasink.NewWorker(c.store, a.cfg.Registry, kSink, p.Projection, workerConfig(p.Worker)),
			leases: c.sink, sink: kSink, app: a,
		})
	}
	var (
		mu      sync.Mutex
		trouble = map[string]bool{} // stalled or failing, as last reported
	)
	runner := projections.NewRunner(projections.RunnerConfig{Logger: c.log, OnChange: func(st projections.WorkerStatus) {
		mu.Lock()
		defer mu.Unlock()
		switch st.State {
		case projections.WorkerStalled:
			trouble[st.Name] = true
			fmt.Fprintf(a.cfg.Stderr, "%s: %s; the others keep running (fix the cause, then '%s projections resume %s')\n",
				a.cfg.Name, oneLine(errors.New(st.String())), a.cfg.Name, st.Name)
		case projections.WorkerRetrying:
			trouble[st.Name] = true
			fmt.Fprintf(a.cfg.Stderr, "%s: %s; starting it again\n", a.cfg.Name, oneLine(errors.New(st.String())))
		case projections.WorkerStarting:
			if trouble[st.Name] {
				trouble[st.Name] = false
				fmt.Fprintf(a.cfg.Stderr, "%s: %s: running again\n", a.cfg.Name, st.Name)
			}
		}
	}})
	for _, wk := range workers {
		runner.Add(wk)
	}
	fmt.Fprintf(w, "running %s (Ctrl-C to stop)\n", strings.Join(names, ", "))
	if err := runner.Run(ctx); err != nil {
		return err
	}
	var (
		failed []error
		errs   []error
	)
	for i, st := range runner.Statuses() {
		cp, err := c.sink.Checkpoint(context.WithoutCancel(ctx), names[i])
		at := "?"
		if err == nil {
			at = cp.Position.String()
		}
		status := "stopped"
		switch st.State {
		case projections.WorkerStalled:
			status = "stalled"
		case projections.WorkerRetrying:
			status = "failed"
		}
		if kw, ok := workers[i].(*kafkaWorker); ok {
			if fe := kw.fenced.Load(); fe != nil {
				status = "fenced"
				st.Err = fe
			}
		}
		if status != "stopped" {
			failed = append(failed, fmt.Errorf("%s %s", names[i], status))
			errs = append(errs, st.Err)
		}
		fmt.Fprintf(w, "%s: %s at %s after applying %s events\n", names[i], status, at, formatCount(workers[i].Applied()))
	}
	if len(failed) > 0 {
		if len(failed) == 1 && len(workers) == 1 && errs[0] != nil {
			return a.explain(errs[0])
		}
		return fmt.Errorf("%w (see 'projections status')", errors.Join(failed...))
	}
	return nil
}

// setupTables creates the tables of a rebuildable projection when none of
// them exists yet (see pgsink.Sink.EnsureTables).
func (a *app) setupTables(ctx context.Context, c *conn, p Projection) (bool, error) {
	rb, ok := p.Projection.(pgsink.Rebuildable)
	if !ok || len(rb.Tables()) == 0 {
		return false, nil
	}
	return c.sink.EnsureTables(ctx, rb)
}

// oneProjection returns the registered projection name, for a command
// that works on one: pg or ep is set. A non-empty onError (the --on-error
// flag) overrides its error policy.
func (a *app) oneProjection(name, onError string) (pg *Projection, ep *ElasticProjection, err error) {
	policy, err := parsePolicy(onError)
	if err != nil {
		return nil, nil, err
	}
	sel, err := a.selectProjections([]string{name})
	if err != nil {
		return nil, nil, err
	}
	if len(sel.kafka) == 1 {
		return nil, nil, fmt.Errorf("%s is a Kafka projection", name) // the callers handle those first
	}
	if len(sel.elastic) == 1 {
		ep = &sel.elastic[0]
		if policy != nil {
			ep.Worker.ErrorPolicy = *policy
		}
		return nil, ep, nil
	}
	pg = &sel.pg[0]
	if policy != nil {
		pg.Worker.ErrorPolicy = *policy
	}
	return pg, nil, nil
}

// parsePolicy reads --on-error: nil when unset.
func parsePolicy(s string) (*projections.ErrorPolicy, error) {
	if s == "" {
		return nil, nil
	}
	var p projections.ErrorPolicy
	if err := p.UnmarshalText([]byte(s)); err != nil {
		return nil, usagef("invalid argument %q for --on-error: want stop or dead-letter", s)
	}
	return &p, nil
}
