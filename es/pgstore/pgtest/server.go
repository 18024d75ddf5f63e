package pgtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratadev/strata/internal/localproc"
)

// ErrNotInstalled means no PostgreSQL server binaries were found. Its message
// is the one line a person needs to fix that.
var ErrNotInstalled = errors.New("PostgreSQL server binaries not found: apt-get install -y postgresql, or set TEST_DATABASE_URL")

// ServerConfig configures [Start]. The zero value works.
type ServerConfig struct {
	// BinDir is the directory holding initdb and postgres. Defaults to the
	// result of [FindBinaries].
	BinDir string
	// Settings are extra server settings (name → value) passed as -c flags.
	// They override the test defaults, which are fsync=off,
	// synchronous_commit=off, full_page_writes=off and max_connections=300.
	Settings map[string]string
	// StartTimeout bounds initdb plus the wait until the server accepts
	// connections. Defaults to 60s.
	StartTimeout time.Duration
	// XactEpoch, when not 0, is the transaction ID epoch the cluster starts
	// at (pg_resetwal -e, run after initdb and before the first start), so
	// that pg_current_xact_id() returns values above XactEpoch<<32, as on a
	// cluster that has run billions of transactions. Defaults to 0: a new
	// cluster's epoch.
	XactEpoch uint32
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	dir    string // temporary directory holding data, socket and log
	binDir string
	url    string
	proc   *localproc.Process

	stopOnce sync.Once
	stopErr  error
}

// defaultSettings are the server settings for tests. Durability is off: the
// data directory is thrown away anyway.
var defaultSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "300",
	"shared_buffers":     "128MB",
	"logging_collector":  "off",
	"log_min_messages":   "warning",
	"max_wal_size":       "1GB",
}

// FindBinaries returns the directory that holds the PostgreSQL server
// binaries (initdb, pg_ctl and postgres): the one on PATH, or else the highest
// version under /usr/lib/postgresql/*/bin. It returns [ErrNotInstalled] when
// there is none.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if hasServerBinaries(dir) {
			return dir, nil
		}
		// A symlink on PATH (Debian's /usr/bin wrappers, or a link in
		// /usr/local/bin): look where it points.
		if target, err := filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(target)) {
			return filepath.Dir(target), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return cmp.Compare(majorVersion(b), majorVersion(a)) // highest first
	})
	for _, dir := range dirs {
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// majorVersion reads 15 from /usr/lib/postgresql/15/bin; -1 if it is not a number.
func majorVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

// Start starts a throwaway server: it creates a data directory in a
// temporary directory, starts a server on it that listens on 127.0.0.1 on a
// free port and trusts every local connection, and waits until it accepts
// connections. The server is tuned for speed, not durability (fsync,
// synchronous_commit and full_page_writes are off; see
// ServerConfig.Settings). [Server.Stop] shuts it down at once and removes
// the directory. When the calling process runs as root, which initdb
// refuses, the server runs as the user nobody.
//
//	srv, err := pgtest.Start(ctx, pgtest.ServerConfig{})
//	if err != nil { ... }
//	defer srv.Stop()
//	pool, err := pgxpool.New(ctx, srv.URL())
func Start(ctx context.Context, opts ServerConfig) (*Server, error) {
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(opts.StartTimeout, 60*time.Second))
	defer cancel()

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cred, err := localproc.Credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := initdb(ctx, binDir, dir, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if opts.XactEpoch != 0 {
		if err := resetEpoch(ctx, binDir, dir, cred, opts.XactEpoch); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}

	settings := make(map[string]string, len(defaultSettings)+len(opts.Settings))
	for k, v := range defaultSettings {
		settings[k] = v
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}

	// The free port is found by binding to it and letting it go, so another
	// process may take it before the server does: try a few ports.
	srv, err := localproc.Retry(ctx, 5, func() (*Server, error) { return launch(ctx, binDir, dir, cred, settings) })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return srv, nil
}

func initdb(ctx context.Context, binDir, dir string, cred *syscall.Credential) error {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata", filepath.Join(dir, "data"),
		"--username", "postgres",
		"--auth", "trust",
		"--encoding", "UTF8",
		"--locale", "C",
		"--no-sync",
		"--no-instructions",
	)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// companion returns the path of another binary of the installation whose
// initdb is in binDir: next to it, or next to the file a symlinked initdb
// points to.
func companion(binDir, name string) string {
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if target, err := filepath.EvalSymlinks(filepath.Join(binDir, "initdb")); err == nil {
		if q := filepath.Join(filepath.Dir(target), name); q != p {
			if _, err := os.Stat(q); err == nil {
				return q
			}
		}
	}
	return p
}

// resetEpoch sets the transaction ID epoch of the stopped cluster in dir.
func resetEpoch(ctx context.Context, binDir, dir string, cred *syscall.Credential, epoch uint32) error {
	cmd := exec.CommandContext(ctx, companion(binDir, "pg_resetwal"),
		"-e", strconv.FormatUint(uint64(epoch), 10), filepath.Join(dir, "data"))
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: set the transaction ID epoch to %d: %w: %s", epoch, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// serverEnv is the environment for initdb and postgres: the caller's, without
// the libpq variables that could point them elsewhere.
func serverEnv() []string {
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func launch(ctx context.Context, binDir, dir string, cred *syscall.Credential, settings map[string]string) (*Server, error) {
	port, err := localproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close() // the child has its own copy

	args := []string{
		"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port),
		"-h", "127.0.0.1",
		"-k", dir,
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	proc, err := localproc.Start(cmd, cred, syscall.SIGQUIT) // SIGQUIT: immediate shutdown
	if err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	srv := &Server{
		dir:    dir,
		binDir: binDir,
		url:    fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		proc:   proc,
	}

	if err := srv.waitReady(ctx); err != nil {
		srv.proc.Stop(syscall.SIGQUIT, 10*time.Second)
		log, _ := os.ReadFile(logPath)
		if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use")) {
			return nil, localproc.ErrPortTaken
		}
		return nil, fmt.Errorf("pgtest: %w\n%s", err, localproc.LastLines(log, 20))
	}
	return srv, nil
}

// waitReady connects until the server answers, the process exits or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, s.url)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("postgres exited before accepting connections: %v", s.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections in time: %w", err)
		case <-tick.C:
		}
	}
}

// URL returns the connection string of the server's postgres database as
// the superuser postgres.
func (s *Server) URL() string { return s.url }

// Dir returns the temporary directory that holds the server's data
// directory and its log file, postgres.log.
func (s *Server) Dir() string { return s.dir }

// Stop shuts the server down at once (immediate shutdown: nothing is flushed)
// and removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.proc.Stop(syscall.SIGQUIT, 10*time.Second) // immediate shutdown
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}
