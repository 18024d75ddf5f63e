package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/examples/orders/app"
)

// serveMetrics serves the metrics of the app cfg configures at addr
// (--metrics-addr) when it is set, and says where; stop stops serving.
func serveMetrics(w io.Writer, addr string, cfg *app.Config) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	m, err := cli.StartMetrics(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	cfg.MeterProvider = m.Provider
	fmt.Fprintf(w, "serving metrics at %s\n", m.URL)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	}, nil
}

// demoMetrics serves the demo's metrics on a free loopback port and says
// where.
func demoMetrics(say func(format string, args ...any), cfg *app.Config) (url string, stop func(), err error) {
	m, err := cli.StartMetrics("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	cfg.MeterProvider = m.Provider
	say("Metrics (Prometheus): %s", m.URL)
	return m.URL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	}, nil
}
