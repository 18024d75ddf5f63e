package cli_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/cqrs"
)

type ping struct{ N int }

// A trace backend that accepts connections and never answers neither
// blocks nor slows commands: every dispatch returns while the export hangs,
// the spans that find the queue full are dropped and counted, Shutdown
// gives up when its context ends, and the drop is logged.
func TestTracingUnreachableBackendDoesNotBlock(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}()
	const queue = 8
	env := map[string]string{
		cli.EnvTracesExporter: "zipkin",
		cli.EnvZipkinEndpoint: "http://" + l.Addr().String() + "/api/v2/spans",
		cli.EnvBSPQueueSize:   strconv.Itoa(queue),
		cli.EnvBSPBatchSize:   "1",
		cli.EnvBSPScheduleDel: "1",
	}
	var logs bytes.Buffer
	tr, err := cli.StartTracing(t.Context(), cli.TracingConfig{ServiceName: "test",
		Getenv: func(k string) string { return env[k] }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Exporter(); got != "zipkin" {
		t.Errorf("Exporter() = %q, want zipkin", got)
	}
	bus := cqrs.NewBus()
	bus.Use(cqrs.Tracing(cqrs.TracingConfig{TracerProvider: tr.TracerProvider()}))
	cqrs.Handle(bus, func(ctx context.Context, p ping) (cqrs.Result, error) { return cqrs.Result{}, nil })

	// The first batch reaches the backend and hangs there.
	if _, err := bus.Dispatch(t.Context(), ping{0}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-t.Context().Done():
		t.Fatal("the exporter never connected to the backend")
	}
	const commands = 10 * queue
	for i := range commands {
		if _, err := bus.Dispatch(t.Context(), ping{i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	if got := tr.Dropped(); got < commands-queue {
		t.Errorf("Dropped() = %d with the export hanging, want at least %d", got, commands-queue)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with the export hanging: %v, want context.DeadlineExceeded", err)
	}
	// Every span is either exported or dropped: none was exported.
	if got, want := tr.Dropped(), int64(commands+1); got != want {
		t.Errorf("Dropped() after Shutdown = %d, want %d", got, want)
	}
	if !strings.Contains(logs.String(), "dropped="+strconv.Itoa(commands+1)) || !strings.Contains(logs.String(), l.Addr().String()) {
		t.Errorf("Shutdown logged %q, want the drop count %d and the endpoint", logs.String(), commands+1)
	}
}

// A wrong setting fails with an error that names the variable; none, the
// default, exports nothing.
func TestTracingSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env     map[string]string
		wantErr string
		want    string
	}{
		{env: nil, want: "none"},
		{env: map[string]string{cli.EnvTracesExporter: "none"}, want: "none"},
		{env: map[string]string{cli.EnvTracesExporter: "zipkin", cli.EnvSDKDisabled: "true"}, want: "none"},
		{env: map[string]string{cli.EnvTracesExporter: "ZIPKIN"}, want: "zipkin"},
		{env: map[string]string{cli.EnvTracesExporter: "jaeger"}, wantErr: "OTEL_TRACES_EXPORTER=\"jaeger\": want zipkin, otlp or none"},
		{env: map[string]string{cli.EnvTracesExporter: "zipkin", cli.EnvBSPQueueSize: "lots"}, wantErr: "OTEL_BSP_MAX_QUEUE_SIZE=\"lots\""},
	} {
		tr, err := cli.StartTracing(t.Context(), cli.TracingConfig{Getenv: func(k string) string { return tc.env[k] }})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, cli.ErrTracingConfig) {
				t.Errorf("env %v: error %v, want one with %q that is ErrTracingConfig", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("env %v: %v", tc.env, err)
			continue
		}
		if got := tr.Exporter(); got != tc.want {
			t.Errorf("env %v: Exporter() = %q, want %q", tc.env, got, tc.want)
		}
		if err := tr.Shutdown(t.Context()); err != nil {
			t.Errorf("env %v: Shutdown: %v", tc.env, err)
		}
	}
}

// Main reads the OTEL_* variables of the process before it runs a
// command: a wrong one is a usage error that names it, and nothing runs.
// (Not parallel: it sets the process's environment.)
func TestMainRefusesWrongTracingSetting(t *testing.T) {
	t.Setenv(cli.EnvTracesExporter, "jaeger")
	var stdout, stderr bytes.Buffer
	root := cli.New(cli.Config{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	code := cli.Main(t.Context(), root, []string{"projections", "list"})
	if code != cli.ExitUsage {
		t.Errorf("exit code %d, want %d (usage)", code, cli.ExitUsage)
	}
	if want := `strata: tracing: OTEL_TRACES_EXPORTER="jaeger": want zipkin, otlp or none`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if stdout.Len() != 0 {
		t.Errorf("the command ran: stdout %q", stdout.String())
	}
}
