package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// orderSearch is an Elasticsearch projection: a document per order. It
// refuses negative totals while reject is set.
type orderSearch struct {
	alias  string
	mu     sync.Mutex
	reject bool
}

func (*orderSearch) Name() string      { return "order_search" }
func (*orderSearch) Handles() []string { return []string{"OrderPlaced"} }

func (p *orderSearch) Index() elasticsink.Index {
	return elasticsink.Index{
		Alias:    p.alias,
		Mappings: json.RawMessage(`{"dynamic":"strict","properties":{"total":{"type":"long"}}}`),
		Settings: json.RawMessage(`{"number_of_shards":1,"number_of_replicas":0}`),
	}
}

func (p *orderSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	p.mu.Lock()
	reject := p.reject
	p.mu.Unlock()
	for _, ev := range events {
		o := ev.Data.(orderPlaced)
		if reject && o.Total < 0 {
			return fmt.Errorf("order %s: negative total %d", o.ID, o.Total)
		}
		if err := tx.Index(ev, p.alias, o.ID, map[string]any{"total": o.Total}); err != nil {
			return err
		}
	}
	return nil
}

// docs counts the documents behind an alias, after a refresh.
func docs(t *testing.T, client *elasticsearch.Client, alias string) int {
	t.Helper()
	if res, err := client.Indices.Refresh(client.Indices.Refresh.WithIndex(alias)); err != nil || res.IsError() {
		t.Fatalf("refresh %s: %v %v", alias, res, err)
	} else {
		res.Body.Close()
	}
	res, err := client.Count(client.Count.WithIndex(alias))
	if err != nil || res.IsError() {
		t.Fatalf("count %s: %v %v", alias, res, err)
	}
	defer res.Body.Close()
	var out struct{ Count int }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Count
}

func TestElasticProjection(t *testing.T) {
	t.Parallel()
	url := elastictest.URL(t)
	client := elastictest.Client(t)
	e := newEnv(t)
	p := &orderSearch{alias: elastictest.Name(t), reject: true}
	t.Cleanup(func() {
		if res, err := client.Indices.Delete([]string{p.alias + "-g*"}); err == nil {
			res.Body.Close()
		}
	})
	o := opts{elastic: []cli.ElasticProjection{{Projection: p}}, env: map[string]string{cli.EnvElasticsearchURL: url}}
	res := e.place(t, 1, -5, 2)

	// run creates the index and parks what the handler refuses.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan run, 1)
	go func() { done <- e.cli(ctx, o, "projections", "run", "--on-error", "dead-letter") }()
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	err := projections.WaitFor(wctx, e.sink, "order_search", res.Position)
	wcancel()
	cancel()
	r := <-done
	if err != nil {
		t.Fatalf("wait for order_search: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	r.check(t, 0, "running order_search (Ctrl-C to stop)", "order_search: stopped at "+res.Position.String()+" after applying 2 events")
	if n := docs(t, client, p.alias); n != 2 {
		t.Errorf("%d documents, want 2", n)
	}
	e.mustRun(t, opts{tty: true}, "projections", "status", "order_search", "--sample", "0").check(t, 0,
		"projection    order_search", "dead letters  1\n", "negative total -5")

	// rebuild: a new index behind the alias, with the progress bar; what
	// the new generation parks is the projection's after the swap.
	e.waitVisible(t, res.Position)
	o.tty = true
	r = e.mustRun(t, o, "projections", "rebuild", "order_search", "--on-error", "dead-letter", "--progress-interval", "1ms")
	if out := r.stdout.String(); !strings.Contains(out, "\r\x1b[Korder_search [==============================] 100%") ||
		!strings.Contains(out, "\nswapped: order_search now serves the new generation (") {
		t.Errorf("rebuild on a terminal printed %q", out)
	}
	if n := docs(t, client, p.alias); n != 2 {
		t.Errorf("%d documents after the rebuild, want 2", n)
	}
	r = e.mustRun(t, opts{}, "projections", "dead-letters", "list")
	if lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "order_search\t") || !strings.Contains(lines[0], "negative total -5") {
		t.Errorf("dead letters after the rebuild:\n%s", r.stdout)
	}
	if r := e.mustRun(t, opts{}, "projections", "list"); strings.Contains(r.stdout.String(), "#rebuild") {
		t.Errorf("projections list shows a rebuild checkpoint:\n%s", r.stdout)
	}

	// Retrying is for PostgreSQL projections; without a URL there is no
	// Elasticsearch.
	e.cli(t.Context(), o, "projections", "dead-letters", "retry", "order_search", "--all").check(t, cli.ExitUsage,
		"retrying is for PostgreSQL projections")
	e.cli(t.Context(), opts{elastic: o.elastic}, "projections", "run").check(t, cli.ExitUsage,
		"no Elasticsearch: set --elasticsearch-url or STRATA_ELASTICSEARCH_URL")
}
