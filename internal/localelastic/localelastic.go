// Package localelastic starts a throwaway Elasticsearch server for tests,
// benchmarks and demos, from the test distribution that
// scripts/ensure-elasticsearch.sh unpacks.
//
//	srv, err := localelastic.Start(ctx, localelastic.Options{})
//	if err != nil { ... }
//	defer srv.Stop()
//	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL()}})
//
// The server is a single node (discovery.type=single-node, so no bootstrap
// checks) listening on 127.0.0.1 on free ports, with security off, a small
// heap and its data and logs in a temporary directory that [Server.Stop]
// removes. Elasticsearch refuses to run as root; when the calling process is
// root, the server runs as the user nobody.
package localelastic

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratadev/strata/internal/localproc"
)

// Version is the Elasticsearch version scripts/ensure-elasticsearch.sh
// installs by default.
const Version = "8.19.7"

// ErrNotInstalled means no unpacked Elasticsearch was found. Its message is
// the one line a person needs to fix that.
var ErrNotInstalled = errors.New("no Elasticsearch found: run scripts/ensure-elasticsearch.sh (make ensure-elasticsearch), or set TEST_ELASTICSEARCH_URL, or STRATA_SKIP_ELASTIC=1 to skip those tests")

// Options tune [Start]. The zero value works.
type Options struct {
	// Home is the unpacked distribution. Defaults to the result of
	// [FindHome].
	Home string
	// Heap is the JVM heap, as for -Xmx. Defaults to "512m".
	Heap string
	// Settings are extra elasticsearch.yml settings (name → value); they
	// override the defaults.
	Settings map[string]string
	// StartTimeout bounds the wait until the cluster is yellow or green.
	// Defaults to 6m: a node needs about 30s on an idle 2-core machine and
	// several minutes on a busy one.
	StartTimeout time.Duration
}

// Server is a running throwaway Elasticsearch node.
type Server struct {
	dir  string
	url  string
	proc *localproc.Process

	stopOnce sync.Once
	stopErr  error
}

// FindHome returns the directory of the unpacked distribution: the one
// named by STRATA_ELASTIC_HOME, or where scripts/ensure-elasticsearch.sh
// puts version [Version]. It returns [ErrNotInstalled] when there is none.
func FindHome() (string, error) {
	home := localproc.FindHome("STRATA_ELASTIC_HOME", "STRATA_ELASTIC_DIR", "STRATA_ELASTIC_VERSION", "elasticsearch", Version, func(d string) bool {
		fi, err := os.Stat(filepath.Join(d, "bin", "elasticsearch"))
		return err == nil && fi.Mode()&0o111 != 0
	})
	if home == "" {
		return "", ErrNotInstalled
	}
	return home, nil
}

// javaHome returns the JDK to run the server with: JAVA_HOME or
// ES_JAVA_HOME, else the one java on PATH belongs to.
func javaHome() (string, error) {
	if h := cmp.Or(os.Getenv("ES_JAVA_HOME"), os.Getenv("JAVA_HOME")); h != "" {
		return h, nil
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("localelastic: no java on PATH and no JAVA_HOME: Elasticsearch 8 needs Java 17 or later")
	}
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("localelastic: %w", err)
	}
	return filepath.Dir(filepath.Dir(target)), nil
}

// Start configures a node in a temporary directory, starts it and waits
// until its cluster health is yellow or green.
func Start(ctx context.Context, opts Options) (*Server, error) {
	home := opts.Home
	if home == "" {
		var err error
		if home, err = FindHome(); err != nil {
			return nil, err
		}
	}
	jh, err := javaHome()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(opts.StartTimeout, 6*time.Minute))
	defer cancel()

	dir, err := os.MkdirTemp("", "localelastic-")
	if err != nil {
		return nil, fmt.Errorf("localelastic: %w", err)
	}
	cred, err := localproc.Credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localelastic: %w", err)
	}
	// A free port may be taken before the node binds it: try again.
	srv, err := localproc.Retry(ctx, 3, func() (*Server, error) { return launch(ctx, home, jh, dir, cred, opts) })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return srv, nil
}

// writeConfig writes the node's config directory: the distribution's
// files, with an elasticsearch.yml of our own.
func writeConfig(home, confDir string, settings map[string]string, cred *syscall.Credential) error {
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	src := filepath.Join(home, "config")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(confDir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if rel == "elasticsearch.yml" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range settings {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %q\n", k, settings[k])
	}
	if err := os.WriteFile(filepath.Join(confDir, "elasticsearch.yml"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if cred == nil {
		return nil
	}
	return filepath.WalkDir(confDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, int(cred.Uid), int(cred.Gid))
	})
}

func launch(ctx context.Context, home, jh, dir string, cred *syscall.Credential, opts Options) (*Server, error) {
	httpPort, err1 := localproc.FreePort()
	transportPort, err2 := localproc.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("localelastic: find a free port: %w", err)
	}
	settings := map[string]string{
		"cluster.name":           "strata-test",
		"node.name":              "strata-test",
		"network.host":           "127.0.0.1",
		"http.port":              strconv.Itoa(httpPort),
		"transport.port":         strconv.Itoa(transportPort),
		"discovery.type":         "single-node",
		"path.data":              filepath.Join(dir, "data"),
		"path.logs":              filepath.Join(dir, "logs"),
		"xpack.security.enabled": "false",
		// A shared machine's disk may be fuller than the watermarks allow;
		// tests must not find their indices read-only for that.
		"cluster.routing.allocation.disk.threshold_enabled": "false",
		"action.auto_create_index":                          "false",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	confDir := filepath.Join(dir, "config")
	if err := writeConfig(home, confDir, settings, cred); err != nil {
		return nil, fmt.Errorf("localelastic: write config: %w", err)
	}
	logPath := filepath.Join(dir, "elasticsearch.out")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("localelastic: %w", err)
	}
	defer logFile.Close()

	heap := cmp.Or(opts.Heap, "512m")
	cmd := exec.Command(filepath.Join(home, "bin", "elasticsearch"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"ES_PATH_CONF="+confDir,
		"ES_JAVA_HOME="+jh,
		"ES_JAVA_OPTS=-Xms"+heap+" -Xmx"+heap+" -XX:ActiveProcessorCount=2",
		"ES_TMPDIR="+filepath.Join(dir, "tmp"),
	)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("localelastic: %w", err)
	}
	if cred != nil {
		_ = os.Chown(filepath.Join(dir, "tmp"), int(cred.Uid), int(cred.Gid))
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	proc, err := localproc.Start(cmd, cred, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("localelastic: start elasticsearch: %w", err)
	}
	srv := &Server{dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d", httpPort), proc: proc}
	if err := srv.waitReady(ctx); err != nil {
		srv.proc.Stop(syscall.SIGTERM, 20*time.Second)
		out, _ := os.ReadFile(logPath)
		if bytes.Contains(out, []byte("BindException")) || bytes.Contains(out, []byte("Address already in use")) {
			return nil, localproc.ErrPortTaken
		}
		return nil, fmt.Errorf("localelastic: %w\n%s", err, localproc.LastLines(out, 30))
	}
	return srv, nil
}

// waitReady asks for the cluster health until it is yellow or green, the
// process exits or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = Healthy(ctx, s.url); lastErr == nil {
			return nil
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("elasticsearch exited before it was ready: %v", s.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("elasticsearch was not ready in time: %w", lastErr)
		case <-tick.C:
		}
	}
}

// Healthy reports nil when the cluster at url is yellow or green.
func Healthy(ctx context.Context, url string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet,
		strings.TrimRight(url, "/")+"/_cluster/health?wait_for_status=yellow&timeout=2s", nil)
	if err != nil {
		return err
	}
	// A client of its own that keeps no idle connection behind: callers
	// check for leaked goroutines.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster health: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// URL returns the node's HTTP address, like http://127.0.0.1:9200.
func (s *Server) URL() string { return s.url }

// Dir returns the temporary directory holding the node's config, data and
// logs.
func (s *Server) Dir() string { return s.dir }

// Stop shuts the node down and removes its directory. It is safe to call
// more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.proc.Stop(syscall.SIGTERM, 20*time.Second)
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}
