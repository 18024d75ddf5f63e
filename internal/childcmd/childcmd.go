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

// Run runs the command args[0] with the arguments args[1:] and this
// process's standard streams, and returns the exit code to exit with: the
// command's, or 1 when it could not be started or was killed by a signal.
// Errors are printed to standard error, prefixed with prog. SIGTERM and
// SIGHUP sent to this process are passed on to the command; how SIGINT and
// SIGQUIT are handled is the caller's to set up beforehand.
func Run(prog string, args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 1
	}
	go func() {
		for sig := range term {
			cmd.Process.Signal(sig)
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
