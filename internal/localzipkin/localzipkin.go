// Package localzipkin starts a throwaway Zipkin server for tests and demos,
// from the jar that scripts/ensure-zipkin.sh fetches, and reads traces back
// through Zipkin's HTTP API.
//
//	srv, err := localzipkin.Start(ctx, localzipkin.Options{})
//	if err != nil { ... }
//	defer srv.Stop()
//	// export spans to srv.SpansURL(), read them with localzipkin.Trace
//
// The server is `java -jar zipkin-server-VERSION-exec.jar` with in-memory
// storage, a small heap, and its HTTP port (API, UI and collector in one)
// bound to 127.0.0.1 only (Armeria's armeria.ports[0].ip setting). It
// starts in about 5 s on an idle 2-core machine and takes about 200 MB.
package localzipkin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stratadev/strata/internal/localproc"
)

// Version is the Zipkin version scripts/ensure-zipkin.sh installs by
// default.
const Version = "3.5.1"

const (
	// HeapDefault is the default of [Options.Heap].
	HeapDefault = "128m"
	// StartTimeoutDefault is the default of [Options.StartTimeout].
	StartTimeoutDefault = time.Minute
	// StopTimeoutDefault is how long [Server.Stop] waits for a graceful
	// shutdown before it kills the server.
	StopTimeoutDefault = 10 * time.Second
)

// ErrNotInstalled means no Zipkin jar was found. Its message is the one
// line a person needs to fix that.
var ErrNotInstalled = errors.New("no Zipkin found: run scripts/ensure-zipkin.sh (make ensure-zipkin), or set TEST_ZIPKIN_URL, or STRATA_SKIP_ZIPKIN=1 to skip those tests")

// Options tune [Start]. The zero value works.
type Options struct {
	// Jar is the path of zipkin-server's exec jar. Defaults to the result
	// of [FindJar].
	Jar string
	// Port is the HTTP port. Defaults to a free loopback port.
	Port int
	// Heap is the JVM heap, as for -Xmx. Defaults to [HeapDefault] (128m).
	Heap string
	// StartTimeout bounds the wait until the server is healthy. Defaults
	// to [StartTimeoutDefault] (1m).
	StartTimeout time.Duration
}

// Server is a running throwaway Zipkin server.
type Server struct {
	dir  string
	port int

	mu      sync.Mutex
	proc    *localproc.Process
	stopped bool
	stopErr error
}

// FindJar returns the path of zipkin-server's exec jar: the one named by
// STRATA_ZIPKIN_JAR, or where scripts/ensure-zipkin.sh puts version
// STRATA_ZIPKIN_VERSION (default [Version]) in the local Maven repository
// (MAVEN_REPOSITORY, default ~/.m2/repository). It returns
// [ErrNotInstalled] when there is none.
func FindJar() (string, error) {
	var paths []string
	if j := os.Getenv("STRATA_ZIPKIN_JAR"); j != "" {
		paths = append(paths, j)
	}
	v := cmp.Or(os.Getenv("STRATA_ZIPKIN_VERSION"), Version)
	rel := filepath.Join("io", "zipkin", "zipkin-server", v, "zipkin-server-"+v+"-exec.jar")
	if r := os.Getenv("MAVEN_REPOSITORY"); r != "" {
		paths = append(paths, filepath.Join(r, rel))
	}
	if h, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(h, ".m2", "repository", rel))
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// javaBin returns the java to run the server with: JAVA_HOME's, else the
// one on PATH.
func javaBin() (string, error) {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return filepath.Join(h, "bin", "java"), nil
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", errors.New("localzipkin: no java on PATH and no JAVA_HOME: Zipkin 3 needs Java 17 or later")
	}
	return p, nil
}

// Start starts a server in a temporary directory (for its log) and waits
// until its /health answers UP.
func Start(ctx context.Context, opts Options) (*Server, error) {
	jar := opts.Jar
	if jar == "" {
		var err error
		if jar, err = FindJar(); err != nil {
			return nil, err
		}
	}
	java, err := javaBin()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(opts.StartTimeout, StartTimeoutDefault))
	defer cancel()
	tries := 3
	if opts.Port != 0 {
		tries = 1
	}
	return localproc.Retry(ctx, tries, func() (*Server, error) {
		s := &Server{port: opts.Port}
		if s.port == 0 {
			if s.port, err = localproc.FreePort(); err != nil {
				return nil, fmt.Errorf("localzipkin: find a free port: %w", err)
			}
		}
		dir, err := os.MkdirTemp("", "localzipkin-")
		if err != nil {
			return nil, fmt.Errorf("localzipkin: %w", err)
		}
		s.dir = dir
		if err := s.launch(ctx, java, jar, cmp.Or(opts.Heap, HeapDefault)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return s, nil
	})
}

func (s *Server) launch(ctx context.Context, java, jar, heap string) error {
	// A taken port would only show after the JVM has started.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
	if err != nil {
		return fmt.Errorf("localzipkin: 127.0.0.1:%d: %w", s.port, localproc.ErrPortTaken)
	}
	l.Close()
	logPath := filepath.Join(s.dir, "zipkin.log")
	out, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("localzipkin: %w", err)
	}
	defer out.Close()
	port := strconv.Itoa(s.port)
	cmd := exec.Command(java, "-Xmx"+heap, "-Xss512k", "-XX:+UseSerialGC",
		// C1 only: starts about a second sooner, fast enough for tests.
		"-XX:TieredStopAtLevel=1",
		"-jar", jar,
		"--armeria.ports[0].port="+port,
		"--armeria.ports[0].ip=127.0.0.1",
		"--armeria.ports[0].protocols=http",
		"--logging.level.root=WARN",
		"--logging.level.com.linecorp.armeria.server.Server=INFO")
	cmd.Env = append(os.Environ(), "STORAGE_TYPE=mem", "SELF_TRACING_ENABLED=false")
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	proc, err := localproc.Start(cmd, nil, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("localzipkin: start zipkin: %w", err)
	}
	if err := s.waitReady(ctx, proc, logPath); err != nil {
		proc.Stop(syscall.SIGTERM, StopTimeoutDefault)
		logs, _ := os.ReadFile(logPath)
		if bindFailed(logs) {
			return fmt.Errorf("localzipkin: 127.0.0.1:%d: %w", s.port, localproc.ErrPortTaken)
		}
		return fmt.Errorf("localzipkin: %w\n%s", err, localproc.LastLines(logs, 30))
	}
	s.proc = proc
	return nil
}

// waitReady polls /health (the server has no other signal) until it
// answers, the process exits or ctx ends.
func (s *Server) waitReady(ctx context.Context, proc *localproc.Process, logPath string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		lastErr := Ready(ctx, s.URL())
		if lastErr == nil {
			return nil
		}
		if logs, _ := os.ReadFile(logPath); bindFailed(logs) {
			return errors.New("zipkin could not bind its port")
		}
		select {
		case <-proc.Exited():
			return fmt.Errorf("zipkin exited before it was ready: %v", proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("zipkin was not ready in time: %w", lastErr)
		case <-tick.C:
		}
	}
}

// bindFailed reports whether a server's log says its port was taken.
func bindFailed(logs []byte) bool {
	return bytes.Contains(logs, []byte("Address already in use")) || bytes.Contains(logs, []byte("BindException"))
}

// Ready reports nil when the Zipkin server at url (http://host:port)
// answers its /health with status UP.
func Ready(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("read /health: %w", err)
	}
	if resp.StatusCode != http.StatusOK || h.Status != "UP" {
		return fmt.Errorf("/health: %s, status %q", resp.Status, h.Status)
	}
	return nil
}

// WaitReady waits until the server at url answers [Ready], for a server
// that is still starting (internal/cmd/withzipkin does not wait for its
// own). It polls, as the server has no other signal, and gives up when ctx
// ends.
func WaitReady(ctx context.Context, url string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := Ready(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zipkin at %s was not ready in time: %w", url, err)
		case <-tick.C:
		}
	}
}

// URL returns the server's base address, like http://127.0.0.1:9411.
func (s *Server) URL() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's HTTP port.
func (s *Server) Port() int { return s.port }

// PID returns the server process's ID, or 0 once it is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 10s) and removes
// its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	if s.proc != nil {
		s.proc.Stop(syscall.SIGTERM, StopTimeoutDefault)
		s.proc = nil
	}
	s.stopErr = os.RemoveAll(s.dir)
	return s.stopErr
}

// SpansURL returns the address a Zipkin exporter sends spans to, for the
// server at base (http://host:port).
func SpansURL(base string) string { return base + "/api/v2/spans" }

// TraceURL returns the address of a trace in the Zipkin UI of the server
// at base.
func TraceURL(base, traceID string) string { return base + "/zipkin/traces/" + traceID }

// Span is a span as Zipkin's API v2 returns it (the fields tests look at).
type Span struct {
	TraceID       string `json:"traceId"`
	ID            string `json:"id"`
	ParentID      string `json:"parentId"`
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	Duration      int64  `json:"duration"` // microseconds
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
	Tags        map[string]string `json:"tags"`
	Annotations []struct {
		Value string `json:"value"`
	} `json:"annotations"`
}

// ErrNoTrace is returned by [Trace] when the server has no span of the
// trace (yet).
var ErrNoTrace = errors.New("localzipkin: no such trace")

// Trace returns the spans of a trace from the server at base, through
// GET /api/v2/trace/{traceID}; [ErrNoTrace] when it has none.
func Trace(ctx context.Context, base, traceID string) ([]Span, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v2/trace/"+traceID, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get trace %s: %w", traceID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get trace %s: %w", traceID, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("get trace %s: %w", traceID, ErrNoTrace)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get trace %s: %s: %s", traceID, resp.Status, localproc.LastLines(body, 5))
	}
	var spans []Span
	if err := json.Unmarshal(body, &spans); err != nil {
		return nil, fmt.Errorf("get trace %s: decode: %w", traceID, err)
	}
	return spans, nil
}
