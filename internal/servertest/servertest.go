// Package servertest runs a test binary against one throwaway server
// (Elasticsearch, Kafka) shared by all its tests, the way the public test
// support packages elastictest and kafkatest offer it: a server named by an
// environment variable is used as it is, one is started otherwise, and
// tests are skipped, or fail when servers are required, when there is none.
package servertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

// Server describes the throwaway server of a test binary.
type Server struct {
	Package string // the support package, for messages: "kafkatest"
	What    string // the server, for messages: "Kafka broker"
	EnvURL  string // names a server to use instead of starting one
	EnvSkip string // skips the tests that need the server when "1"
	// StartTimeout bounds Start.
	StartTimeout time.Duration
	// Start starts a server and returns its address and how to stop it.
	Start func(ctx context.Context) (url string, stop func() error, err error)
	// NotInstalled is what a test gets when there is no server at all.
	NotInstalled error

	startErr error
}

// Run starts a server when EnvURL is unset (and EnvSkip is not 1), runs
// next (pgtest.Run, say, or m.Run when nil), stops the server and returns
// next's exit code.
func (s *Server) Run(m *testing.M, next func(*testing.M) int) int {
	if next == nil {
		next = func(m *testing.M) int { return m.Run() }
	}
	if os.Getenv(s.EnvURL) != "" {
		return next(m)
	}
	if os.Getenv(s.EnvSkip) == "1" {
		pgtest.ExcludeExamples(s.EnvSkip + "=1")
		return next(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.StartTimeout)
	url, stop, err := s.Start(ctx)
	cancel()
	if err != nil {
		s.startErr = err // the tests that need it fail with it
		if !pgtest.Required() {
			pgtest.ExcludeExamples("no " + s.What)
		}
		return next(m)
	}
	os.Setenv(s.EnvURL, url)
	code := next(m)
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: stop the test %s: %v\n", s.Package, s.What, err)
	}
	return code
}

// URL returns the server's address. It skips the test when EnvSkip is 1,
// and when there is no server, unless servers are required; then it fails
// it.
func (s *Server) URL(t testing.TB) string {
	t.Helper()
	if os.Getenv(s.EnvSkip) == "1" {
		t.Skip(s.EnvSkip + "=1")
	}
	if s.startErr != nil {
		line := strings.SplitN(s.startErr.Error(), "\n", 2)[0]
		if !pgtest.Required() {
			t.Skip("no " + s.What + ": " + line)
		}
		t.Fatal(line)
	}
	url := os.Getenv(s.EnvURL)
	if url == "" {
		t.Fatal(s.NotInstalled)
	}
	return url
}
