package elastictest

import (
	"context"
	"time"

	"github.com/stratadev/strata/internal/localelastic"
)

// ErrNotInstalled means no unpacked Elasticsearch distribution was found.
// Its message is the one line a person needs to fix that.
var ErrNotInstalled = localelastic.ErrNotInstalled

// EnvHome names the unpacked Elasticsearch distribution [Start] runs, when
// it is not where strata's scripts/ensure-elasticsearch.sh puts it.
const EnvHome = "STRATA_ELASTIC_HOME"

// ServerConfig configures [Start]. The zero value works.
type ServerConfig struct {
	// Home is the unpacked distribution (for example Elastic's test
	// distribution, org.elasticsearch.distribution.integ-test-zip from Maven
	// Central, or a full download). Defaults to $STRATA_ELASTIC_HOME, then to
	// where scripts/ensure-elasticsearch.sh unpacks it.
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
type Server struct{ srv *localelastic.Server }

// Start starts a throwaway single-node Elasticsearch server (Java 17 or
// later on PATH or in JAVA_HOME) and waits until it answers: it listens on
// 127.0.0.1 on free ports, with security off, a small heap and its data
// and logs in a temporary directory that [Server.Stop] removes.
// Elasticsearch refuses to run as root; when the calling process is root,
// the server runs as the user nobody.
//
//	srv, err := elastictest.Start(ctx, elastictest.ServerConfig{})
//	if err != nil { ... }
//	defer srv.Stop()
//	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL()}})
func Start(ctx context.Context, cfg ServerConfig) (*Server, error) {
	srv, err := localelastic.Start(ctx, localelastic.Options{
		Home: cfg.Home, Heap: cfg.Heap, Settings: cfg.Settings, StartTimeout: cfg.StartTimeout,
	})
	if err != nil {
		return nil, err
	}
	return &Server{srv: srv}, nil
}

// URL is the server's HTTP address, such as http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL() }

// Dir is the temporary directory holding the server's data and logs.
func (s *Server) Dir() string { return s.srv.Dir() }

// Stop stops the server and removes its directory. It may be called more
// than once.
func (s *Server) Stop() error { return s.srv.Stop() }

// FindHome returns the unpacked distribution [Start] runs by default:
// $STRATA_ELASTIC_HOME, or where scripts/ensure-elasticsearch.sh puts it.
// It returns [ErrNotInstalled] when there is none.
func FindHome() (string, error) { return localelastic.FindHome() }
