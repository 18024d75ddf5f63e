// Package childcmd runs the command that a wrapper such as withpg or
// withelastic was given, as its child, and reports the exit code to pass on.
package childcmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// Main is a wrapper's whole main: it reads "-- command [args...]" from args,
// calls setup (which starts a server and sets the environment variable that
// names it, or does nothing when one is named already), runs the command,
// calls the stop function setup returned, and returns the exit code to exit
// with: 2 for a usage error, 1 when setup fails, else the command's.
func Main(prog string, args []string, setup func() (stop func(), err error)) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, "usage: %s -- command [args...]\n", prog)
		return 2
	}
	stop, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if stop != nil {
		defer stop()
	}
	return Run(prog, args)
}

// Run runs the command args[0] with the arguments args[1:] and this
// process's standard streams, and returns the exit code to exit with: the
// command's, or 1 when it could not be started or was killed by a signal.
// Errors are printed to standard error, prefixed with prog. SIGTERM and
// SIGHUP sent to this process are passed on to the command. SIGINT and
// SIGQUIT are caught and dropped: a Ctrl-C reaches the command through the
// terminal's process group, and this process keeps running until the
// command has exited, so that the caller can stop its server after it.
// (Catching rather than ignoring them leaves the command's own handling
// alone: ignored signals would stay ignored in it.)
func Run(prog string, args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Stop(interrupts)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGHUP)
	defer func() { signal.Stop(term); close(term) }()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 1
	}
	go func() {
		for sig := range term {
			_ = cmd.Process.Signal(sig) // fails only once the child has exited
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if code := exit.ExitCode(); code >= 0 {
			return code
		}
		return 1 // killed by a signal
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 1
	}
}
