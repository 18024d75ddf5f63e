package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// MetricsPath is the path a [MetricsServer] serves the metrics at.
const MetricsPath = "/metrics"

// MetricsServer serves the metrics of its MeterProvider in the
// Prometheus text format at [MetricsPath], through OpenTelemetry's
// Prometheus exporter: strata.projection.lag becomes
// strata_projection_lag, a counter gets _total, and a unit of seconds
// _seconds (see docs/observability.md). Collecting happens when it is
// scraped: recording a measurement never waits for the network.
type MetricsServer struct {
	// Provider is the MeterProvider to pass to the configs of strata's
	// packages (MeterProvider fields) and to the cqrs.Metrics middleware.
	Provider *sdkmetric.MeterProvider
	// URL is where the metrics are served, such as
	// http://127.0.0.1:9464/metrics.
	URL string

	srv      *http.Server
	done     chan error
	once     sync.Once
	closeErr error
}

// StartMetrics listens on addr (host:port; port 0 picks a free one) and
// serves the metrics of a new MeterProvider there, with the Go runtime's
// and the process's metrics, until [MetricsServer.Close]. It fails at
// once when it cannot listen.
func StartMetrics(addr string) (*MetricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("start the metrics exporter: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A scrape that runs long must not pile up collections.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	m := &MetricsServer{
		Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		URL:      "http://" + ln.Addr().String() + MetricsPath,
		srv:      &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan error, 1),
	}
	go func() {
		err := m.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		m.done <- err
	}()
	return m, nil
}

// Close stops serving, letting a scrape in progress finish until ctx ends,
// and shuts the MeterProvider down. It may be called more than once, and
// on a nil server.
func (m *MetricsServer) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.once.Do(func() {
		err := m.srv.Shutdown(ctx)
		if err == nil {
			select {
			case err = <-m.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if perr := m.Provider.Shutdown(ctx); perr != nil {
			err = errors.Join(err, perr)
		}
		m.closeErr = err
	})
	return m.closeErr
}

// startMetrics serves the metrics at addr (--metrics-addr) when it is set,
// and says where; stop stops serving.
func (a *app) startMetrics(addr string) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	m, err := StartMetrics(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	a.meters = m.Provider
	fmt.Fprintf(a.stdout(), "serving metrics at %s\n", m.URL)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			a.logger().Warn("stop serving metrics", "error", err)
		}
	}, nil
}
