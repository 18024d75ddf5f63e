package localkafka_test

import (
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/internal/localkafka"
	"github.com/stratadev/strata/internal/localproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func skipUnlessLocal(t *testing.T) {
	t.Helper()
	if os.Getenv("STRATA_SKIP_KAFKA") == "1" {
		t.Skip("STRATA_SKIP_KAFKA=1")
	}
	if _, err := localkafka.FindHome(); errors.Is(err, localkafka.ErrNotInstalled) {
		if !pgtest.Required() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	srv, err := localkafka.Start(t.Context(), localkafka.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if err := localkafka.Ready(t.Context(), srv.URL()); err != nil {
		t.Errorf("ready: %v", err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(srv.Port()); srv.URL() != want {
		t.Errorf("URL() = %q, want %q", srv.URL(), want)
	}
	if srv.Port() >= 32768 {
		t.Errorf("Port() = %d, want one below 32768", srv.Port())
	}
	pid, dir := srv.PID(), srv.Dir()
	if pid == 0 {
		t.Fatal("PID() = 0 while running")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d after Stop: kill -0 gave %v, want ESRCH", pid, err)
	}
	if got := srv.PID(); got != 0 {
		t.Errorf("PID() after Stop = %d, want 0", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", dir, err)
	}
	l, err := net.Listen("tcp", srv.URL())
	if err != nil {
		t.Errorf("port still taken after Stop: %v", err)
	} else {
		l.Close()
	}
	if err := localkafka.Ready(t.Context(), srv.URL()); err == nil {
		t.Error("still answers after Stop")
	}
	if err := srv.Restart(t.Context()); !errors.Is(err, localkafka.ErrStopped) {
		t.Errorf("Restart after Stop: %v, want ErrStopped", err)
	}
}

// A broker started on a port of the caller's listens there, and a port
// that is taken fails the start with an error that says so.
func TestStartOnPort(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	port, err := localkafka.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localkafka.Start(t.Context(), localkafka.Options{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if want := "127.0.0.1:" + strconv.Itoa(port); srv.URL() != want {
		t.Errorf("URL() = %q, want %q", srv.URL(), want)
	}
	if err := localkafka.Ready(t.Context(), srv.URL()); err != nil {
		t.Errorf("ready: %v", err)
	}

	_, err = localkafka.Start(t.Context(), localkafka.Options{Port: port})
	if !errors.Is(err, localproc.ErrPortTaken) {
		t.Fatalf("a second broker on the same port: %v, want ErrPortTaken", err)
	}
}

// Restart replaces a running broker, and starts a killed one again, on the
// same port and directory.
func TestRestart(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	srv, err := localkafka.Start(t.Context(), localkafka.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url, dir, first := srv.URL(), srv.Dir(), srv.PID()

	if err := srv.Restart(t.Context()); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	second := srv.PID()
	if second == 0 || second == first {
		t.Errorf("PID() after Restart = %d, want a new process (was %d)", second, first)
	}
	if err := syscall.Kill(first, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("first process %d after Restart: kill -0 gave %v, want ESRCH", first, err)
	}
	if srv.URL() != url || srv.Dir() != dir {
		t.Errorf("after Restart URL, Dir = %s, %s; want %s, %s", srv.URL(), srv.Dir(), url, dir)
	}
	if err := localkafka.Ready(t.Context(), url); err != nil {
		t.Errorf("ready after Restart: %v", err)
	}

	srv.Kill()
	if err := syscall.Kill(second, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d after Kill: kill -0 gave %v, want ESRCH", second, err)
	}
	if got := srv.PID(); got != 0 {
		t.Errorf("PID() after Kill = %d, want 0", got)
	}
	if err := localkafka.Ready(t.Context(), url); err == nil {
		t.Error("still answers after Kill")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("directory after Kill: %v", err)
	}
	if err := srv.Restart(t.Context()); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if err := localkafka.Ready(t.Context(), url); err != nil {
		t.Errorf("ready after Kill and Restart: %v", err)
	}
}
