package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/localkafka"
)

// ErrNotInstalled means no Kafka jars were found. Its message is the one
// line a person needs to fix that.
var ErrNotInstalled = localkafka.ErrNotInstalled

// ErrStopped is returned by [Server.Restart] after [Server.Stop].
var ErrStopped = localkafka.ErrStopped

// EnvHome names the directory whose libs subdirectory holds the Kafka jars
// [Start] runs, when they are not where strata's scripts/ensure-kafka.sh
// puts them.
const EnvHome = "STRATA_KAFKA_HOME"

// ServerConfig configures [Start]. The zero value works.
type ServerConfig struct {
	// Home is the directory whose libs subdirectory holds Kafka's jars
	// (org.apache.kafka:kafka_2.13 and its runtime dependencies, as
	// scripts/ensure-kafka.sh copies them from Maven Central, or the libs
	// of a binary download). Defaults to $STRATA_KAFKA_HOME, then to where
	// scripts/ensure-kafka.sh puts them.
	Home string
	// Port is the port [Server.URL] names. Defaults to a free port below
	// 32768 (see [FreePort]).
	Port int
	// ControllerPort is the KRaft controller's port. Defaults to a free
	// port below 32768.
	ControllerPort int
	// Heap is the JVM heap, as for -Xmx. Defaults to "512m".
	Heap string
	// Settings are extra server.properties settings (name → value); they
	// override the defaults.
	Settings map[string]string
	// StartTimeout bounds the wait until the broker answers, for [Start]
	// and [Server.Restart]. Defaults to 2m: a broker needs about 4s on an
	// idle 2-core machine.
	StartTimeout time.Duration
}

// Server is a running throwaway Kafka broker.
type Server struct{ srv *localkafka.Server }

// Start starts a throwaway single-node Kafka broker in KRaft mode (Java 17
// or later on PATH or in JAVA_HOME) and waits until it serves metadata: it
// listens on 127.0.0.1 only, with one replica for the internal topics (so
// that transactions and consumer groups work), no topic created on first
// use, a small heap, and its data and logs in a temporary directory that
// [Server.Stop] removes.
//
//	srv, err := kafkatest.Start(ctx, kafkatest.ServerConfig{})
//	if err != nil { ... }
//	defer srv.Stop()
//	client, err := kgo.NewClient(kgo.SeedBrokers(srv.URL()))
func Start(ctx context.Context, cfg ServerConfig) (*Server, error) {
	srv, err := localkafka.Start(ctx, localkafka.Options{
		Home: cfg.Home, Port: cfg.Port, ControllerPort: cfg.ControllerPort, Heap: cfg.Heap,
		Settings: cfg.Settings, StartTimeout: cfg.StartTimeout,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{srv: srv}
	if err := s.waitMetadata(ctx, cfg.StartTimeout); err != nil {
		srv.Stop()
		return nil, err
	}
	return s, nil
}

// waitMetadata asks the broker for the cluster's metadata until the broker
// lists itself, or the timeout (0: 2m) passes.
func (s *Server) waitMetadata(ctx context.Context, timeout time.Duration) error {
	if timeout == 0 {
		timeout = localkafka.StartTimeoutDefault
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.URL()))
	if err != nil {
		return fmt.Errorf("kafkatest: client for %s: %w", s.URL(), err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		md, err := adm.BrokerMetadata(ctx)
		if err == nil && len(md.Brokers) == 0 {
			err = errors.New("no broker in the metadata")
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: broker metadata from %s: %w", s.URL(), err)
		case <-tick.C:
		}
	}
}

// URL is the broker's bootstrap address, such as 127.0.0.1:24567.
func (s *Server) URL() string { return s.srv.URL() }

// Port is the port of [Server.URL].
func (s *Server) Port() int { return s.srv.Port() }

// Dir is the temporary directory holding the broker's data and logs.
func (s *Server) Dir() string { return s.srv.Dir() }

// Kill ends the broker with SIGKILL, as a crash would, and waits until it
// has exited. Its data stays, for [Server.Restart].
func (s *Server) Kill() { s.srv.Kill() }

// Restart starts the broker again on the same ports and data directory (a
// running one is shut down first) and waits until it serves metadata:
// topics and committed transactions survive. It returns [ErrStopped]
// after [Server.Stop].
func (s *Server) Restart(ctx context.Context) error {
	if err := s.srv.Restart(ctx); err != nil {
		return err
	}
	return s.waitMetadata(ctx, 0)
}

// Stop stops the broker and removes its directory. It may be called more
// than once, and after [Server.Kill].
func (s *Server) Stop() error { return s.srv.Stop() }

// FreePort returns a loopback port below 32768 that was free a moment ago,
// for a [ServerConfig.Port] that must stay free while a broker restarts:
// Linux does not hand out such ports to outgoing connections.
func FreePort() (int, error) { return localkafka.FreePort() }

// FindHome returns the directory [Start] runs Kafka from by default:
// $STRATA_KAFKA_HOME, or where scripts/ensure-kafka.sh puts it. It returns
// [ErrNotInstalled] when there is none.
func FindHome() (string, error) { return localkafka.FindHome() }
