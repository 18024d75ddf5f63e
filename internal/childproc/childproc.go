// Package childproc runs the test binary again as a child process, for the
// crash tests that kill a worker with SIGKILL from outside: the child runs
// no test, finds what to do in its environment, and prints a line starting
// with "running " once it works.
package childproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ReadyPrefix starts the line a child prints on standard output once it
// runs.
const ReadyPrefix = "running "

// ReadyTimeout bounds the wait for that line.
const ReadyTimeout = 30 * time.Second

// Start starts the test binary again, running no test, with env added to
// its environment and its standard error shared, and waits until it
// prints a line starting with [ReadyPrefix]. what names the child in
// errors ("a worker process").
func Start(what string, env ...string) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), ReadyPrefix) {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return nil, errors.New(what + " ended before it ran")
		}
	case <-time.After(ReadyTimeout):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not run within %v", what, ReadyTimeout)
	}
	return cmd, nil
}

// Slot keeps one child running: it starts another when one dies, until
// its context ends. The zero value is ready to use.
type Slot struct {
	mu  sync.Mutex
	cmd *exec.Cmd
}

// Run starts children with start, one at a time, until ctx ends, and sends
// the error of each start on started; it returns after a start fails.
func (s *Slot) Run(ctx context.Context, start func() (*exec.Cmd, error), started chan<- error) {
	for ctx.Err() == nil {
		cmd, err := start()
		started <- err
		if err != nil {
			return
		}
		s.mu.Lock()
		s.cmd = cmd
		s.mu.Unlock()
		if ctx.Err() != nil {
			// Started while the test ended, after its last kill.
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
		_ = cmd.Wait()
	}
}

// Kill kills the slot's child with SIGKILL, if it has one.
func (s *Slot) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
	}
}
