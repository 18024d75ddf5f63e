package cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// ServeShutdownTimeout bounds how long [Serve] lets the requests in flight
// finish once its context ends.
const ServeShutdownTimeout = 5 * time.Second

// Serve serves handler on ln and runs run (an application's workers) beside
// it, until ctx ends or either fails. Then it shuts the server down,
// letting the requests in flight finish within ServeShutdownTimeout, and
// returns the first error, or nil when ctx ended. It is the serve loop of
// an application binary's `serve` command.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler, run func(context.Context) error) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return run(ctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ServeShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
