package localzipkin_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/internal/localproc"
	"github.com/stratadev/strata/internal/localzipkin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func skipUnlessLocal(t *testing.T) {
	t.Helper()
	if os.Getenv("STRATA_SKIP_ZIPKIN") == "1" {
		t.Skip("STRATA_SKIP_ZIPKIN=1")
	}
	if _, err := localzipkin.FindJar(); errors.Is(err, localzipkin.ErrNotInstalled) {
		if !pgtest.Required() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// A started server answers on loopback only, takes spans, returns them by
// trace ID, and is gone after Stop.
func TestStartStop(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	srv, err := localzipkin.Start(t.Context(), localzipkin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if want := "http://127.0.0.1:" + strconv.Itoa(srv.Port()); srv.URL() != want {
		t.Errorf("URL() = %q, want %q", srv.URL(), want)
	}
	if ip := nonLoopbackIP(t); ip != nil {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(srv.Port())), 2*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("the server answers on %s, want loopback only", ip)
		}
	}

	const traceID = "5af7183fb1d4cf5f5af7183fb1d4cf5f"
	if _, err := localzipkin.Trace(t.Context(), srv.URL(), traceID); !errors.Is(err, localzipkin.ErrNoTrace) {
		t.Fatalf("Trace of an unknown trace: %v, want ErrNoTrace", err)
	}
	span := `[{"traceId":"` + traceID + `","id":"6b221d5bc9e6496c","parentId":"5b4185666d50f68b","name":"get /orders","kind":"SERVER",
		"timestamp":` + strconv.FormatInt(time.Now().UnixMicro(), 10) + `,"duration":1200,"localEndpoint":{"serviceName":"orders"},"tags":{"k":"v"}}]`
	resp, err := http.Post(localzipkin.SpansURL(srv.URL()), "application/json", bytes.NewBufferString(span))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST spans: %s, want 202 Accepted", resp.Status)
	}
	// Zipkin stores spans asynchronously: poll its API (it has no signal).
	var spans []localzipkin.Span
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans, err = localzipkin.Trace(t.Context(), srv.URL(), traceID)
		if err == nil || !errors.Is(err, localzipkin.ErrNoTrace) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 {
		t.Fatalf("trace holds %d spans, want 1", len(spans))
	}
	got := spans[0]
	want := localzipkin.Span{TraceID: traceID, ID: "6b221d5bc9e6496c", ParentID: "5b4185666d50f68b", Name: "get /orders", Kind: "SERVER", Duration: 1200}
	want.LocalEndpoint.ServiceName = "orders"
	for _, f := range []struct{ name, got, want string }{
		{"traceId", got.TraceID, want.TraceID}, {"id", got.ID, want.ID}, {"parentId", got.ParentID, want.ParentID},
		{"name", got.Name, want.Name}, {"kind", got.Kind, want.Kind}, {"serviceName", got.LocalEndpoint.ServiceName, want.LocalEndpoint.ServiceName},
		{"tags.k", got.Tags["k"], "v"},
	} {
		if f.got != f.want {
			t.Errorf("span %s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if got.Duration != want.Duration {
		t.Errorf("span duration = %d, want %d", got.Duration, want.Duration)
	}

	pid := srv.PID()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d after Stop: kill -0 gave %v, want ESRCH", pid, err)
	}
	if err := localzipkin.Ready(t.Context(), srv.URL()); err == nil {
		t.Error("still answers after Stop")
	}
}

// A port that is taken fails the start with an error that says so.
func TestStartOnTakenPort(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = localzipkin.Start(t.Context(), localzipkin.Options{Port: l.Addr().(*net.TCPAddr).Port})
	if !errors.Is(err, localproc.ErrPortTaken) {
		t.Fatalf("start on a taken port: %v, want ErrPortTaken", err)
	}
}

// nonLoopbackIP returns an address of this machine that is not loopback,
// or nil when it has none.
func nonLoopbackIP(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return nil
}
