// Package esdbtest is a protocol-level stand-in for an EventStoreDB /
// KurrentDB node, for tests that cannot run the real (.NET) server. It
// serves the gRPC services that EventStore-Client-Go v4 calls for the
// operations esdbstore uses — ServerFeatures.GetSupportedMethods,
// Streams.Append, Streams.Read (stream and $all reads, and catch-up
// subscriptions to $all with filters, checkpoints and caught-up messages) and
// Streams.Tombstone — from the generated server interfaces in the client
// module, and follows the server's documented semantics:
//
//   - Stream revisions count from 0. Expected revisions any, no_stream,
//     stream_exists and an exact revision are checked as the server's index
//     writer does, including its idempotency rules: a write whose event IDs
//     are already stored at the place the expected revision names succeeds
//     without writing; with any or stream_exists, a write whose first event
//     ID was recently written to the same stream succeeds without writing if
//     all its events follow in order. Otherwise IDs are not checked, so the
//     server stores the same ID twice (in another stream, or in the same
//     stream at a new revision) without complaint, as the real one does.
//   - Every event has a log position used as both its commit and prepare
//     position; positions grow by the size of each record. Reading $all
//     forwards from a position includes the event at it; backwards excludes
//     it; a subscription from a position starts after it.
//   - System events ($-prefixed streams and types) are in $all: the node
//     writes a few as it starts.
//   - A tombstoned stream refuses reads and writes with the server's
//     stream-deleted error (gRPC FailedPrecondition with exception trailers).
//
// Server-side stream deletion (soft delete), persistent subscriptions,
// projections, stream subscriptions, batch append, ACLs and clusters are not
// implemented.
//
// [Server.Restart] drops every connection and active subscription and serves
// the same data on the same address again; [Server.Stop] and [Server.Start]
// leave a gap between.
package esdbtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

// Version is the server version GetSupportedMethods reports.
const Version = "24.10.0"

// Server is a running test node.
type Server struct {
	db   *db
	addr string

	mu   sync.Mutex
	grpc *grpc.Server
	done chan struct{} // closed when the current Serve returns
}

// Start starts a server on a free local port and stops it when the test
// ends.
func Start(t testing.TB) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("esdbtest: listen: %v", err)
	}
	s := &Server{db: newDB(), addr: lis.Addr().String()}
	s.serve(lis)
	t.Cleanup(s.Stop)
	return s
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// URL returns a connection string for the server, without TLS.
func (s *Server) URL() string { return "esdb://" + s.addr + "?tls=false" }

func (s *Server) serve(lis net.Listener) {
	g := grpc.NewServer()
	streams.RegisterStreamsServer(g, &streamsService{db: s.db})
	serverfeatures.RegisterServerFeaturesServer(g, featuresService{})
	done := make(chan struct{})
	s.mu.Lock()
	s.grpc, s.done = g, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
}

// Stop closes every connection and stops listening. The data stays, for
// [Server.Start]. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	g, done := s.grpc, s.done
	s.grpc, s.done = nil, nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.Stop()
	<-done
}

// Start listens on the server's address again after [Server.Stop].
func (s *Server) Start() error {
	s.mu.Lock()
	running := s.grpc != nil
	s.mu.Unlock()
	if running {
		return errors.New("esdbtest: start: already running")
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("esdbtest: listen on %s again: %w", s.addr, err)
	}
	s.serve(lis)
	return nil
}

// Restart drops every connection, including active subscriptions, and
// serves the same data on the same address again.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// Subscribed returns a channel that is closed the next time a subscription
// to $all is confirmed, so a test can wait until a client has
// re-subscribed.
func (s *Server) Subscribed() <-chan struct{} {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if s.db.subscribed == nil {
		s.db.subscribed = make(chan struct{})
	}
	return s.db.subscribed
}

type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
}
