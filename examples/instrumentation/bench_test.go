//go:build unix

package instrumentation_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

// setup is one way of running: what is turned on.
type setup struct {
	name   string
	meters func(b *testing.B) metric.MeterProvider
	tracer func(b *testing.B) trace.TracerProvider
}

// discard is a span exporter that drops what it gets, behind the SDK's
// batch span processor, as an exporter to a backend would be.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func sdkMeters(b *testing.B) metric.MeterProvider {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp
}

// sdkTracer samples ratio of the traces it starts; a projection's batch,
// which continues the trace of its events' command, follows the command's
// decision, except at 100%, where every batch is sampled.
func sdkTracer(ratio float64) func(b *testing.B) trace.TracerProvider {
	return func(b *testing.B) trace.TracerProvider {
		sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
		if ratio >= 1 {
			sampler = sdktrace.AlwaysSample()
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sampler))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}
}

var setups = []setup{
	{"off", func(*testing.B) metric.MeterProvider { return noop.NewMeterProvider() },
		func(*testing.B) trace.TracerProvider { return tracenoop.NewTracerProvider() }},
	{"metrics", sdkMeters, func(*testing.B) trace.TracerProvider { return tracenoop.NewTracerProvider() }},
	{"metrics+trace1%", sdkMeters, sdkTracer(0.01)},
	{"metrics+trace100%", sdkMeters, sdkTracer(1)},
}

var seq atomic.Int64

// report reports each setup's throughput and its loss against the first
// (off), from the total time each took for the same work.
func report(b *testing.B, unit string, work float64, took []time.Duration) {
	base := work / took[0].Seconds()
	for i, s := range setups {
		rate := work / took[i].Seconds()
		b.ReportMetric(rate, s.name+"-"+unit+"/s")
		if i > 0 {
			b.ReportMetric(100*(1-rate/base), s.name+"-loss-%")
		}
	}
}

// BenchmarkCommands dispatches CreateProduct (one event, a new stream)
// through a bus with cqrs.Metrics and cqrs.Tracing on a pgstore, each
// setup on its schema. The setups take turns, a block of commandBlock
// commands each, so that they share the machine's load alike. Two
// measures: the median time of a command (a PostgreSQL round trip, whose
// outliers on a shared machine dwarf the instrumentation, does not move
// a median), and the CPU time this process spent per command, which is
// where instrumentation costs and which the server's load does not touch
// (the batch span processor's goroutine included).
func BenchmarkCommands(b *testing.B) {
	const commandBlock = 20
	ctx := context.Background()
	buses := make([]*cqrs.Bus, len(setups))
	for i, s := range setups {
		pool, schema := pgtest.NewSchema(b)
		mp := s.meters(b)
		store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet, MeterProvider: mp})
		if _, err := store.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		bus := cqrs.NewBus()
		bus.Use(cqrs.Metrics(cqrs.MetricsConfig{MeterProvider: mp}), cqrs.Tracing(cqrs.TracingConfig{TracerProvider: s.tracer(b)}))
		orders.Register(bus, orders.NewRepositories(store, orders.NewRegistry()))
		buses[i] = bus
	}
	times := make([][]time.Duration, len(setups))
	cpu := make([]time.Duration, len(setups))
	n := 0
	for b.Loop() {
		n += commandBlock
		for i, bus := range buses {
			cpuStart := processCPU(b)
			for range commandBlock {
				start := time.Now()
				if _, err := bus.Dispatch(ctx, orders.CreateProduct{ProductID: fmt.Sprint("p", seq.Add(1)), Name: "Tea", PriceCents: 450}); err != nil {
					b.Fatal(err)
				}
				times[i] = append(times[i], time.Since(start))
			}
			cpu[i] += processCPU(b) - cpuStart
		}
	}
	medians := make([]time.Duration, len(setups))
	for i := range setups {
		slices.Sort(times[i])
		medians[i] = times[i][len(times[i])/2]
	}
	for i, s := range setups {
		b.ReportMetric(1/medians[i].Seconds(), s.name+"-cmd/s")
		b.ReportMetric(float64(cpu[i].Microseconds())/float64(n), s.name+"-cpu-us/cmd")
		if i > 0 {
			b.ReportMetric(100*(1-medians[0].Seconds()/medians[i].Seconds()), s.name+"-loss-%")
			b.ReportMetric(100*(cpu[i].Seconds()/cpu[0].Seconds()-1), s.name+"-cpu-extra-%")
		}
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// counted applies ProductCreated events and writes nothing but its
// checkpoint: the worker's own cost, which instrumentation adds to, is all
// there is to measure.
type counted struct{ name string }

func (p counted) Name() string      { return p.name }
func (p counted) Handles() []string { return []string{orders.TypeProductCreated} }
func (p counted) HandleBatch(context.Context, *pgsink.Tx, []projections.Event) error {
	return nil
}

// BenchmarkProjection catches a pgsink worker up with a log of events, in
// each setup by turns, with a projection of a new name each time.
func BenchmarkProjection(b *testing.B) {
	const events = 10000
	ctx := context.Background()
	pool, schema := pgtest.NewSchemaWith(b, pgtest.SchemaConfig{MaxConns: 8})
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	if _, err := sink.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	batch := make([]es.EventData, 100)
	for i := 0; i < events; i += len(batch) {
		for j := range batch {
			// One command in a hundred was sampled, as at 1%.
			flags := "00"
			if (i+j)%100 == 0 {
				flags = "01"
			}
			batch[j] = es.EventData{Type: orders.TypeProductCreated, Data: fmt.Appendf(nil, `{"product_id":"p%d","name":"Tea","price_cents":450}`, i+j),
				Metadata: es.Metadata{es.MetaTraceParent: fmt.Sprintf("00-%032x-%016x-%s", i+j+1, i+j+1, flags)}}
		}
		if _, err := store.Append(ctx, fmt.Sprint("product-", i), es.NoStream, batch...); err != nil {
			b.Fatal(err)
		}
	}
	reg := orders.NewRegistry()
	providers := make([]projections.Config, len(setups))
	for i, s := range setups {
		providers[i] = projections.Config{Logger: quiet, MeterProvider: s.meters(b), TracerProvider: s.tracer(b)}
	}
	took := make([]time.Duration, len(setups))
	n := 0
	for b.Loop() {
		n++
		for i := range setups {
			name := fmt.Sprint("bench", seq.Add(1))
			w := pgsink.NewWorker(store, reg, sink, counted{name}, providers[i])
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- w.Run(rctx) }()
			// Polled every millisecond rather than waited for with
			// projections.WaitFor, whose wake-up delay would dwarf the
			// differences measured.
			deadline := time.Now().Add(5 * time.Minute)
			for w.Applied() < events && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			took[i] += time.Since(start)
			cancel()
			if err := <-done; err != nil || w.Applied() < events {
				b.Fatalf("worker applied %d of %d events: %v", w.Applied(), events, err)
			}
		}
	}
	report(b, "event", float64(n*events), took)
}
