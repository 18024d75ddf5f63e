package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	// Deprecated upstream (removal planned for 2027, in favour of OTLP,
	// which Zipkin 3 does not take without a module of its own); the
	// Zipkin exporter is what Zipkin users need until then.
	"go.opentelemetry.io/otel/exporters/zipkin" //nolint:staticcheck // see above
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The OpenTelemetry environment variables [StartTracing] reads itself. The
// SDK and the exporters read the others (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS and the rest of OTEL_EXPORTER_OTLP_*).
const (
	EnvTracesExporter  = "OTEL_TRACES_EXPORTER"          // zipkin, otlp or none (the default)
	EnvZipkinEndpoint  = "OTEL_EXPORTER_ZIPKIN_ENDPOINT" // defaults to http://localhost:9411/api/v2/spans
	EnvSDKDisabled     = "OTEL_SDK_DISABLED"             // true: no tracing whatever the exporter
	EnvBSPQueueSize    = "OTEL_BSP_MAX_QUEUE_SIZE"       // spans held for export; defaults to 2048
	EnvBSPBatchSize    = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
	EnvBSPScheduleDel  = "OTEL_BSP_SCHEDULE_DELAY" // milliseconds between exports; defaults to 5000
	EnvBSPExportTimout = "OTEL_BSP_EXPORT_TIMEOUT" // milliseconds per export; defaults to 30000
)

// Defaults of the span queue, as OpenTelemetry's batch span processor has
// them.
const (
	SpanQueueSizeDefault     = 2048
	SpanBatchSizeDefault     = 512
	SpanScheduleDelayDefault = 5 * time.Second
	SpanExportTimeoutDefault = 30 * time.Second
	// TracingShutdownTimeoutDefault bounds the last export when a binary
	// exits.
	TracingShutdownTimeoutDefault = 5 * time.Second
)

// ErrTracingConfig is the sentinel of a tracing setting that is wrong.
var ErrTracingConfig = errors.New("cli: bad tracing setting")

// TracingConfigError names the environment variable at fault.
type TracingConfigError struct {
	Var, Value, Reason string
}

func (e *TracingConfigError) Error() string {
	return fmt.Sprintf("tracing: %s=%q: %s", e.Var, e.Value, e.Reason)
}

// Unwrap returns [ErrTracingConfig].
func (e *TracingConfigError) Unwrap() error { return ErrTracingConfig }

// TracingConfig tunes [StartTracing]. The zero value works.
type TracingConfig struct {
	// ServiceName is the service.name of the spans unless
	// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES set it. Defaults to
	// the binary's name, [NameDefault] when unknown.
	ServiceName string
	// Getenv reads the variables [StartTracing] reads itself (see
	// [EnvTracesExporter]). Defaults to os.Getenv.
	Getenv func(string) string
	// Logger reports spans dropped at shutdown. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Tracing is the trace export of a binary, as [StartTracing] set it up.
type Tracing struct {
	exporter string
	endpoint string
	provider *sdktrace.TracerProvider // nil when off
	queue    *dropQueue
	log      *slog.Logger
	reg      metric.Registration
	client   *http.Client // the zipkin exporter's
}

// StartTracing sets up trace export from the standard OpenTelemetry
// environment variables: OTEL_TRACES_EXPORTER picks zipkin (to
// OTEL_EXPORTER_ZIPKIN_ENDPOINT), otlp (OTLP over HTTP, to
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) or
// none, the default. With an exporter it makes an SDK TracerProvider
// (sampling as OTEL_TRACES_SAMPLER says, parent-based always-on by
// default). It does no I/O:
// spans go to a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE) that a goroutine
// exports in batches; when the queue is full, because the backend is slow
// or unreachable, spans are dropped and counted ([Tracing.Dropped], and
// the counter strata.trace.spans.dropped of the global MeterProvider),
// never waited for. Call [Tracing.Shutdown] when done.
//
// [Main] calls it for every binary, and sets [Tracing.TracerProvider] and
// the W3C trace-context propagator as the global ones, which strata's
// packages use by default.
func StartTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := &Tracing{exporter: strings.ToLower(strings.TrimSpace(getenv(EnvTracesExporter))),
		log: cmp.Or(cfg.Logger, slog.Default())}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") {
		t.exporter = "none"
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch t.exporter {
	case "", "none":
		t.exporter = "none"
		return t, nil
	case "zipkin":
		t.endpoint = cmp.Or(getenv(EnvZipkinEndpoint), "http://localhost:9411/api/v2/spans")
		t.client = &http.Client{}
		exp, err = zipkin.New(t.endpoint, zipkin.WithClient(t.client))
	case "otlp":
		t.endpoint = cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "http://localhost:4318")
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, &TracingConfigError{Var: EnvTracesExporter, Value: t.exporter, Reason: "want zipkin, otlp or none"}
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: set up the %s exporter to %s: %w", t.exporter, t.endpoint, err)
	}
	qc, err := queueConfig(getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", cmp.Or(cfg.ServiceName, NameDefault))),
		resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource from OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME: %w", err)
	}
	t.queue = newDropQueue(exp, qc)
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.queue), sdktrace.WithResource(res))
	meter := otel.GetMeterProvider().Meter("github.com/stratadev/strata/cmd/strata/cli")
	dropped, err := meter.Int64ObservableCounter("strata.trace.spans.dropped", metric.WithUnit("{span}"),
		metric.WithDescription("Spans the trace export dropped: its queue was full or the export failed."))
	if err == nil {
		t.reg, _ = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(dropped, t.queue.dropped.Load())
			return nil
		}, dropped)
	}
	return t, nil
}

func queueConfig(getenv func(string) string) (queueOpts, error) {
	q := queueOpts{size: SpanQueueSizeDefault, batch: SpanBatchSizeDefault,
		delay: SpanScheduleDelayDefault, timeout: SpanExportTimeoutDefault}
	var errs []error
	num := func(name string, set func(int)) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, &TracingConfigError{Var: name, Value: v, Reason: "want a positive whole number"})
			return
		}
		set(n)
	}
	num(EnvBSPQueueSize, func(n int) { q.size = n })
	num(EnvBSPBatchSize, func(n int) { q.batch = n })
	num(EnvBSPScheduleDel, func(n int) { q.delay = time.Duration(n) * time.Millisecond })
	num(EnvBSPExportTimout, func(n int) { q.timeout = time.Duration(n) * time.Millisecond })
	q.batch = min(q.batch, q.size)
	return q, errors.Join(errs...)
}

// Exporter returns the exporter in use: zipkin, otlp or none.
func (t *Tracing) Exporter() string { return t.exporter }

// TracerProvider returns the provider spans are exported from: a no-op
// one when the exporter is none.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t.provider == nil {
		return noop.NewTracerProvider()
	}
	return t.provider
}

// Dropped returns how many sampled spans were not exported: dropped
// because the queue was full, failed to export, or still queued when
// [Tracing.Shutdown] gave up.
func (t *Tracing) Dropped() int64 {
	if t.queue == nil {
		return 0
	}
	return t.queue.dropped.Load()
}

// ForceFlush exports the spans ended so far and waits for the export, or
// for ctx.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown exports what is queued, within ctx, and stops the export. When
// spans were dropped, it logs how many, with the exporter and its
// endpoint. It is safe to call more than once.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	if t.reg != nil {
		_ = t.reg.Unregister()
	}
	err := t.provider.Shutdown(ctx)
	if t.client != nil {
		t.client.CloseIdleConnections()
	}
	if n := t.Dropped(); n > 0 {
		t.log.WarnContext(ctx, "tracing: spans dropped: the trace backend was slow or unreachable",
			"dropped", n, "exporter", t.exporter, "endpoint", t.endpoint)
	}
	if err != nil {
		return fmt.Errorf("tracing: shut down the %s exporter to %s: %w", t.exporter, t.endpoint, err)
	}
	return nil
}

type queueOpts struct {
	size, batch    int
	delay, timeout time.Duration
}

// dropQueue is a span processor like the SDK's batch span processor in
// its non-blocking mode, which counts what it drops: OnEnd never waits,
// and a span that finds the queue full is dropped and counted, as are the
// spans of a failed export.
type dropQueue struct {
	exp     sdktrace.SpanExporter
	opts    queueOpts
	queue   chan sdktrace.ReadOnlySpan
	flush   chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	abort   context.CancelFunc // ends an export in flight
	base    context.Context
	dropped atomic.Int64
	once    sync.Once
}

func newDropQueue(exp sdktrace.SpanExporter, o queueOpts) *dropQueue {
	q := &dropQueue{exp: exp, opts: o, queue: make(chan sdktrace.ReadOnlySpan, o.size),
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	q.base, q.abort = context.WithCancel(context.Background())
	go q.run()
	return q
}

func (q *dropQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *dropQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-q.stop:
		q.dropped.Add(1)
		return
	default:
	}
	select {
	case q.queue <- s:
	default:
		q.dropped.Add(1)
	}
}

func (q *dropQueue) run() {
	defer close(q.done)
	tick := time.NewTicker(q.opts.delay)
	defer tick.Stop()
	batch := make([]sdktrace.ReadOnlySpan, 0, q.opts.batch)
	export := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(q.base, q.opts.timeout)
		if err := q.exp.ExportSpans(ctx, batch); err != nil {
			q.dropped.Add(int64(len(batch)))
		}
		cancel()
		clear(batch)
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case s := <-q.queue:
				if batch = append(batch, s); len(batch) == q.opts.batch {
					export()
				}
			default:
				export()
				return
			}
		}
	}
	for {
		select {
		case s := <-q.queue:
			if batch = append(batch, s); len(batch) == q.opts.batch {
				export()
			}
		case <-tick.C:
			export()
		case ack := <-q.flush:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

func (q *dropQueue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *dropQueue) Shutdown(ctx context.Context) error {
	var err error
	q.once.Do(func() {
		close(q.stop)
		select {
		case <-q.done:
		case <-ctx.Done():
			q.abort() // the export in flight fails, and its spans count
			<-q.done
			err = ctx.Err()
		}
		q.dropped.Add(int64(len(q.queue))) // ended after the last drain
		err = errors.Join(err, q.exp.Shutdown(ctx))
	})
	return err
}

// startGlobalTracing starts the trace export of a binary named name (see
// [StartTracing]) and makes it the global one. The returned function shuts
// it down within [TracingShutdownTimeoutDefault]; a warning about dropped
// spans goes to w.
func startGlobalTracing(ctx context.Context, name string, w io.Writer) (stop func(), err error) {
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t, err := StartTracing(ctx, TracingConfig{ServiceName: name, Logger: log})
	if err != nil {
		return nil, err
	}
	if t.provider == nil {
		return func() {}, nil
	}
	otel.SetTracerProvider(t.provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TracingShutdownTimeoutDefault)
		defer cancel()
		if err := t.Shutdown(ctx); err != nil {
			log.WarnContext(ctx, err.Error())
		}
	}, nil
}
