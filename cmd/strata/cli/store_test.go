package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es"
)

func TestStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.place(t, 1, 2)
	if _, err := e.store.Append(t.Context(), "order-o1", es.Exact(1), mustEventType("OrderPlaced", `{"id":"o1","total":10}`)); err != nil {
		t.Fatal(err)
	}

	r := e.mustRun(t, opts{tty: true}, "streams", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "STREAM") ||
		!strings.HasPrefix(lines[1], "order-o1  2 ") || !strings.HasPrefix(lines[2], "order-o2  1 ") {
		t.Errorf("streams list:\n%s", r.stdout)
	}
	r = e.mustRun(t, opts{}, "streams", "list", "--prefix", "order-o2")
	if got := r.stdout.String(); !strings.HasPrefix(got, "order-o2\t1\tOrderPlaced\t") || strings.Count(got, "\n") != 1 {
		t.Errorf("streams list --prefix, piped: %q", got)
	}

	r = e.mustRun(t, opts{}, "streams", "read", "order-o1", "-o", "json")
	var recs []struct {
		Version int64
		Type    string
		Data    struct{ Total int64 }
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &recs); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(recs) != 2 || recs[0].Version != 1 || recs[1].Data.Total != 10 {
		t.Errorf("streams read -o json: %+v", recs)
	}
	r = e.mustRun(t, opts{tty: true}, "streams", "read", "order-o1", "--backwards", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "2 ") {
		t.Errorf("streams read --backwards --limit 1:\n%s", r.stdout)
	}

	e.cli(t.Context(), opts{}, "streams", "read", "order-nope").check(t, cli.ExitFailed, `strata: stream "order-nope" not found`)
}

func TestEventsTail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.place(t, 1, 2, 3)
	last, err := e.store.Append(t.Context(), "customer-1", es.NoStream, mustEventType("CustomerJoined", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	e.waitVisible(t, last.Position)

	r := e.mustRun(t, opts{}, "events", "tail", "--from", "start", "--follow=false", "--type", "OrderPlaced", "-o", "json")
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("tail printed %d lines, want 3:\n%s", len(lines), r.stdout)
	}
	var first struct {
		Stream   string
		Position string
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Stream != "order-o1" {
		t.Fatalf("first line %q: %+v, %v", lines[0], first, err)
	}

	// From a position, following, until --limit events came.
	r = e.mustRun(t, opts{}, "events", "tail", "--from", first.Position, "--limit", "2")
	got := r.stdout.String()
	if strings.Count(got, "\n") != 2 || !strings.Contains(got, "\torder-o2\t1\tOrderPlaced\t") || strings.Contains(got, "order-o1") {
		t.Errorf("tail --from %s --limit 2:\n%s", first.Position, got)
	}

	// Following from the head: new events only, until interrupted.
	ctx, cancel := context.WithCancel(t.Context())
	out, errOut := newBuffer(), newBuffer()
	done := make(chan run)
	go func() { done <- e.cli(ctx, opts{tty: true, stdout: out, stderr: errOut}, "events", "tail") }()
	errOut.waitFor(t, "following the log after")
	e.place(t, 77)
	out.waitFor(t, "order-o77")
	cancel()
	r = <-done
	r.check(t, 0, "POSITION", "order-o77")
	if strings.Contains(r.stdout.String(), "order-o1") {
		t.Errorf("tail from the head printed old events:\n%s", r.stdout)
	}
}

func mustEventType(typ, data string) es.EventData {
	return es.EventData{Type: typ, Data: []byte(data)}
}
