// Package elastictest gives tests a real Elasticsearch server.
//
// A test package runs its tests through [Run] from TestMain, around the
// PostgreSQL setup when it needs both:
//
//	func TestMain(m *testing.M) { os.Exit(elastictest.Run(m, pgtest.Run)) }
//
// and each test takes the shared client and names of its own:
//
//	client := elastictest.Client(t)
//	alias := elastictest.Name(t)
//
// The server is the one named by TEST_ELASTICSEARCH_URL. When that is
// unset, Run starts a throwaway one (see [Start]) for the test binary;
// strata's own `make test` starts one for all packages instead. When no
// server can be had, the tests that need one skip with one line saying why
// (or fail under CI=true or STRATA_REQUIRE_SERVERS=1, see
// [pgtest.Required]); STRATA_SKIP_ELASTIC=1 skips them without trying.
package elastictest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/stratadev/strata/internal/servertest"
)

const (
	// EnvURL names the test server.
	EnvURL = "TEST_ELASTICSEARCH_URL"
	// EnvSkip skips the tests that need Elasticsearch when set to 1.
	EnvSkip = "STRATA_SKIP_ELASTIC"
)

var server = &servertest.Server{
	Package: "elastictest", What: "Elasticsearch server", EnvURL: EnvURL, EnvSkip: EnvSkip,
	StartTimeout: 7 * time.Minute, NotInstalled: ErrNotInstalled,
	Start: func(ctx context.Context) (string, func() error, error) {
		srv, err := Start(ctx, ServerConfig{})
		if err != nil {
			return "", nil, err
		}
		return srv.URL(), srv.Stop, nil
	},
}

// Run starts a throwaway server when TEST_ELASTICSEARCH_URL is unset (and
// STRATA_SKIP_ELASTIC is not 1), runs next (pgtest.Run, or m.Run), stops
// the server and returns next's exit code.
func Run(m *testing.M, next func(*testing.M) int) int { return server.Run(m, next) }

// URL returns the server's address. It skips the test when
// STRATA_SKIP_ELASTIC=1 and fails it when there is no server.
func URL(t testing.TB) string {
	t.Helper()
	return server.URL(t)
}

// Client returns a client of the test server for the test; its idle
// connections are closed when the test ends, so goleak finds no goroutine
// of theirs.
func Client(t testing.TB) *elasticsearch.Client {
	t.Helper()
	return ClientOf(t, URL(t))
}

// ClientOf is [Client] for another address, such as a proxy's.
func ClientOf(t testing.TB, url string) *elasticsearch.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{url}, Transport: tr})
	if err != nil {
		t.Fatalf("elastictest: client for %s: %v", url, err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return client
}

// Name returns a name unique to the test, valid as an index or alias name:
// "t-" + the test name's letters and digits + a random suffix.
func Name(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String()
}
