// Package localproc runs a throwaway server process for tests and demos: on
// a free loopback port, as the user nobody when running as root (PostgreSQL
// and Elasticsearch both refuse root), in a process group of its own that
// goes away with its parent. Packages es/pgstore/pgtest,
// internal/localelastic and internal/localkafka build on it.
package localproc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrPortTaken is returned by a launch whose server could not bind the port
// it was given: another process took it after [FreePort] found it free.
var ErrPortTaken = errors.New("port taken")

// Retry calls launch up to tries times, for as long as it fails with
// [ErrPortTaken] and ctx is not done, and returns its last result.
func Retry[T any](ctx context.Context, tries int, launch func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range tries {
		if v, err = launch(); err == nil || !errors.Is(err, ErrPortTaken) || ctx.Err() != nil {
			break
		}
	}
	return v, err
}

// Credential returns nil normally, or the user nobody when running as root,
// in which case dir is handed to nobody.
func Credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, and the server refuses root: need the user nobody: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user nobody: %w", err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		return nil, fmt.Errorf("hand %s to nobody: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LastLines returns the last n lines of a log, for error messages.
func LastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Process is a started server process.
type Process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Start starts cmd as cred (nil: as this process's user) in a process group
// of its own, so that a Ctrl-C in the terminal reaches the caller and not
// the server, and, on Linux, with deathSig sent to it if the caller dies
// (other systems have no such signal: there a server outlives a caller
// killed with SIGKILL until it is stopped by hand).
func Start(cmd *exec.Cmd, cred *syscall.Credential, deathSig syscall.Signal) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr(cred, deathSig)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid returns the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err returns the process's exit status once [Process.Exited] is closed.
func (p *Process) Err() error {
	<-p.exited
	return p.waitErr
}

// Stop sends sig to the process group and waits for the process to exit;
// after grace it sends SIGKILL. It returns at once if the process has
// exited already.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// FindHome returns the first of the places a server's distribution may be
// in that ok accepts: the directory the environment variable envHome
// names, then name-VERSION (VERSION from envVersion, else version) under
// the directory envDir names, under /opt/strata and under the user's
// cache directory's strata, as the scripts/ensure-*.sh scripts unpack
// them. It returns "" when none is.
func FindHome(envHome, envDir, envVersion, name, version string, ok func(dir string) bool) string {
	var dirs []string
	if h := os.Getenv(envHome); h != "" {
		dirs = append(dirs, h)
	}
	name += "-" + cmp.Or(os.Getenv(envVersion), version)
	if d := os.Getenv(envDir); d != "" {
		dirs = append(dirs, filepath.Join(d, name))
	}
	dirs = append(dirs, filepath.Join("/opt/strata", name))
	if c, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(c, "strata", name))
	}
	for _, d := range dirs {
		if ok(d) {
			return d
		}
	}
	return ""
}
