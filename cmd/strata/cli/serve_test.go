package cli_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/stratadev/strata/cmd/strata/cli"
)

// Serve answers requests while run runs, returns nil when its context ends,
// and returns run's error, with the server closed, when run fails.
func TestServe(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}

	ln := listen()
	ctx, cancel := context.WithCancel(t.Context())
	running := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- cli.Serve(ctx, ln, handler, func(ctx context.Context) error {
			close(running)
			<-ctx.Done()
			return nil
		})
	}()
	<-running
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q; want ok", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v; want nil", err)
	}

	ln = listen()
	boom := errors.New("workers failed")
	err = cli.Serve(t.Context(), ln, handler, func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Serve with failing workers: %v; want %v", err, boom)
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Errorf("the server still answers after Serve returned")
	}
}
