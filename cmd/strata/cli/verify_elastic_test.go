package cli_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

func TestElasticVerifyAndReset(t *testing.T) {
	t.Parallel()
	url := elastictest.URL(t)
	client := elastictest.Client(t)
	e := newEnv(t)
	p := &orderSearch{alias: elastictest.Name(t)}
	t.Cleanup(func() {
		if res, err := client.Indices.Delete([]string{p.alias + "-g*"}); err == nil {
			res.Body.Close()
		}
	})
	o := opts{elastic: []cli.ElasticProjection{{Projection: p}}, env: map[string]string{cli.EnvElasticsearchURL: url}}
	res := e.place(t, 1, 2, 3)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, "projections", "run") }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, "order_search", res.Position)
	wcancel()
	cancel()
	if r := <-done; err != nil {
		t.Fatalf("wait for order_search: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	pos := res.Position.String()

	e.mustRun(t, o, "projections", "verify", "order_search").check(t, 0,
		"order_search equals its rebuild at "+pos+": 3 documents in "+p.alias+"-g1, 3 events\n")
	del, err := client.Delete(p.alias, "o1", client.Delete.WithRefresh("true"))
	if err != nil {
		t.Fatalf("delete o1: %v", err)
	}
	del.Body.Close() // a body left open keeps its connection out of the idle pool
	if del.IsError() {
		t.Fatalf("delete o1: %s", del)
	}
	e.cli(t.Context(), o, "projections", "verify", "order_search").check(t, cli.ExitFailed,
		"order_search differs from its rebuild at "+pos+" (3 events): 2 live documents in "+p.alias+"-g1, 3 rebuilt; 1 missing, 0 extra, 0 different\n",
		`    missing    o1: rebuilt {"total":1}`,
		"order_search has drifted from its rebuild at "+pos+": 1 documents differ", "projections rebuild order_search")

	// A reset back is refused: the documents reflect the events already.
	e.cli(t.Context(), o, "projections", "reset", "order_search").check(t, cli.ExitFailed,
		"not resetting order_search from "+pos+" to the start", "projections rebuild order_search", "--idempotent")
	if cp, err := e.sink.Checkpoint(t.Context(), "order_search"); err != nil || cp.Position != res.Position {
		t.Errorf("checkpoint %s, %v after the refusal; want %s", cp.Position, err, pos)
	}
	e.mustRun(t, o, "projections", "reset", "order_search", "--idempotent").check(t, 0, "reset order_search: checkpoint "+pos+" -> 0:0")
	if cp, err := e.sink.Checkpoint(t.Context(), "order_search"); err != nil || cp.Position != es.Start {
		t.Errorf("checkpoint %s, %v after reset --idempotent; want 0:0", cp.Position, err)
	}
}
