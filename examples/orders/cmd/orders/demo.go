package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

const searchHowTo = "To turn it on: install Java 17+ and mvn (apt-get install -y openjdk-17-jre-headless maven unzip), " +
	"then run `make demo` again (scripts/ensure-elasticsearch.sh fetches Elasticsearch), " +
	"or set " + cli.EnvElasticsearchURL + " to an Elasticsearch 8 server."

func demoCommand() *cobra.Command {
	var addr, shippingBin string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start throwaway servers, serve the APIs, run a scripted scenario and print what the reads answer",
		Long: `Start a throwaway PostgreSQL server (and Elasticsearch and Kafka, when they are
installed; see scripts/ensure-elasticsearch.sh and scripts/ensure-kafka.sh),
migrate, serve the write API, the read API and the projection workers in this
process, drive a short scenario through the HTTP APIs and print what each read
endpoint answered. With Kafka, the order events are published to the topic
orders.v1, and with --shipping the shipping service (examples/shipping) runs as
a second process that consumes them; the scenario then shows a command in this
service reaching the other service's read model. Then keep serving until
Ctrl-C, unless DEMO_EXIT=1.

` + cli.EnvDatabaseURL + `, ` + cli.EnvElasticsearchURL + ` and ` + cli.EnvKafkaBrokers + ` name servers of your own instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return demo(cmd, addr, shippingBin) },
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to serve on; a free port if it is taken")
	cmd.Flags().StringVar(&shippingBin, "shipping", "", "the shipping service's binary (go build ./examples/shipping/cmd/shipping), run as a second service that consumes the order events from Kafka")
	return cmd
}

func demo(cmd *cobra.Command, addr, shippingBin string) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	waitZipkin := startZipkin(ctx)

	s, err := cli.ReadSettings(cmd)
	if err != nil {
		return err
	}
	dbURL := s.DatabaseURL
	if dbURL == "" {
		say("Starting a throwaway PostgreSQL server...")
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		srv, err := pgtest.Start(sctx, pgtest.ServerConfig{})
		cancel()
		if err != nil {
			return err
		}
		defer srv.Stop()
		dbURL = srv.URL()
	}
	say("PostgreSQL: %s", dbURL)
	pool, err := app.NewPool(ctx, dbURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()

	cfg := app.Config{Pool: pool, Schema: s.Schema, Logger: logger()}
	cfg.Checkout = demoCheckout
	esURL := s.ElasticsearchURL
	if esURL == "" {
		if _, err := elastictest.FindHome(); err != nil {
			cfg.SearchOff = "search is off: Elasticsearch is not installed. " + searchHowTo
		} else {
			say("Starting a throwaway Elasticsearch server (this takes a little while)...")
			sctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
			srv, err := elastictest.Start(sctx, elastictest.ServerConfig{})
			cancel()
			if err != nil {
				cfg.SearchOff = "search is off: Elasticsearch did not start (" + firstLine(err) + "). " + searchHowTo
			} else {
				defer srv.Stop()
				esURL = srv.URL()
			}
		}
	}
	if esURL != "" {
		say("Elasticsearch: %s", esURL)
		if cfg.Elastic, err = elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{esURL}}); err != nil {
			return err
		}
	} else {
		say("%s", cfg.SearchOff)
	}

	zipkin, off := waitZipkin()
	if zipkin != nil {
		defer zipkin.stop()
		if err := zipkin.export(ctx); err != nil {
			return err
		}
		say("Zipkin: %s/zipkin/", zipkin.url)
	} else {
		say("%s", off)
	}

	brokers := strings.Join(s.KafkaBrokers, ",")
	if brokers == "" {
		addr, stop, off := startKafka(ctx, say)
		defer stop()
		if off != "" {
			say("%s", off)
		}
		brokers = addr
	}
	var shipping string
	if brokers != "" {
		say("Kafka: %s", brokers)
		cfg.KafkaBrokers = strings.Split(brokers, ",")
		if shippingBin != "" {
			say("Starting the shipping service (%s), on the schema \"shipping\"...", shippingBin)
			base, stop, err := startShipping(ctx, shippingBin, dbURL, brokers)
			if err != nil {
				return err
			}
			defer stop()
			shipping = base
			say("Shipping: %s", shipping)
		}
	}

	metricsURL, stopMetrics, err := demoMetrics(say, &cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	a, err := app.New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, a, ln) }()
	say("Serving the write API, the read API and the projection workers at %s\n", base)

	traces := map[string]string{}
	if err := scenario(ctx, out, base, cfg.Elastic != nil, shipping, traces); err != nil {
		cancel()
		<-done //nolint:errcheck // the scenario's error is the one to report
		return fmt.Errorf("demo scenario: %w", err)
	}

	if zipkin != nil {
		zipkin.report(ctx, say, traces, cfg.Elastic != nil, shipping != "")
	}

	if os.Getenv("DEMO_EXIT") == "1" {
		say("\nDEMO_EXIT=1: stopping.")
		cancel()
		return <-done
	}
	say("\nStill serving at %s until Ctrl-C. Try:", base)
	say("  curl -s %s/orders/o-2003", base)
	say("  curl -s '%s/products/tea/orders?status=placed&limit=10'", base)
	say("  curl -s '%s/orders/search?q=darjeeling&sort=-total'", base)
	say("  curl -s %s | grep '^strata_projection_lag'   # the metrics", metricsURL)
	if shipping != "" {
		say("  curl -s %s/shipments/o-1002        # the shipping service", shipping)
	}
	say(`  curl -s -XPOST %s/orders -H 'Content-Type: application/json' -d '{"order_id":"o-9","customer_id":"c-9","customer_name":"Dan","lines":[{"product_id":"cup","quantity":1}]}'`, base)
	say(`  curl -s -XPOST %s/orders/o-9/checkout -H 'Content-Type: application/json' -d '{"card":"decline"}'`, base)
	err = <-done
	if ctx.Err() != nil {
		say("Stopped.")
		return nil
	}
	return err
}

func firstLine(err error) string { return strings.SplitN(err.Error(), "\n", 2)[0] }

// scenario drives the APIs like a UI would and prints what the reads
// answer.
func scenario(ctx context.Context, out io.Writer, base string, search bool, shipping string, traces map[string]string) error {
	c := &demoClient{ctx: ctx, out: out, base: base, traces: traces}
	c.section("Create products")
	c.write("POST", "/products", `{"product_id":"tea","name":"Assam Tea","price_cents":450}`)
	c.write("POST", "/products", `{"product_id":"cup","name":"Blue Cup","price_cents":1200}`)
	c.write("POST", "/products", `{"product_id":"pot","name":"Cast-Iron Teapot","price_cents":3500}`)

	c.section("Place orders, and move one to shipped")
	c.write("POST", "/orders", `{"order_id":"o-1001","customer_id":"c-1","customer_name":"Ann Smith","lines":[{"product_id":"tea","quantity":2},{"product_id":"cup","quantity":1}]}`)
	c.write("POST", "/orders", `{"order_id":"o-1002","customer_id":"c-2","customer_name":"Bob Jones","lines":[{"product_id":"tea","quantity":1},{"product_id":"pot","quantity":1}]}`)
	c.write("POST", "/orders", `{"order_id":"o-1003","customer_id":"c-3","customer_name":"Chloé Martin","lines":[{"product_id":"cup","quantity":4}]}`)
	c.write("POST", "/orders/o-1002/confirm", "")
	c.write("POST", "/orders/o-1002/pay", `{"amount_cents":3950}`)
	c.write("POST", "/orders/o-1002/ship", "")

	c.section("The order screen: one call, read-your-writes with the consistency token")
	c.read("/orders/o-1001")

	c.section("Rename a product: every order view that shows it follows, open and shipped")
	c.write("POST", "/products/tea/rename", `{"name":"Darjeeling Tea"}`)
	c.read("/orders/o-1001")
	c.read("/orders/o-1002")

	c.section("Which orders contain tea? (an index table keyed by product)")
	c.read("/products/tea/orders")
	c.read("/products/tea/orders?status=shipped")

	c.section("Full-text search (Elasticsearch)")
	if search {
		c.read("/orders/search?q=darjeeling")
		c.read("/orders/search?q=chloe")
		c.read("/orders/search?min_total=1000&sort=-total")
	} else {
		c.read("/orders/search?q=darjeeling")
	}

	c.section("Bad input is refused with a clear error, and nothing is written")
	c.write("POST", "/orders", `{"customer_id":"c-4","customer_name":"Dan","lines":[{"product_id":"tea","quantity":-1}]}`)
	c.write("POST", "/orders", `{"customer_id":"c-4","customer_name":"Dan","lines":[{"product_id":"kettle","quantity":1}]}`)
	c.write("POST", "/orders/o-1002/cancel", "")

	checkoutScenario(c)

	if shipping != "" {
		shippingScenario(c, shipping)
	}

	c.section("Health: every projection running (a stalled one would be named here, and the APIs keep serving)")
	if res, b := c.do("GET", "/healthz", "", nil); res != nil {
		fmt.Fprintf(c.out, "< GET /healthz\n  %d, X-Health: %s\n  %s", res.StatusCode, res.Header.Get("X-Health"), b)
	}
	return c.err
}

type demoClient struct {
	ctx   context.Context
	out   io.Writer
	base  string
	token string // the last write's consistency token
	err   error
	// traces holds the trace ID of each request, by "METHOD path"
	// (the last one), when tracing is on.
	traces map[string]string
}

func (c *demoClient) section(title string) {
	if c.err == nil {
		fmt.Fprintf(c.out, "\n== %s\n", title)
	}
}

func (c *demoClient) do(method, path, body string, header http.Header) (*http.Response, []byte) {
	if c.err != nil {
		return nil, nil
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, rd)
	if err != nil {
		c.err = err
		return nil, nil
	}
	if method == "POST" || method == "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	span, req := clientSpan(req)
	defer span.End()
	recordTrace(c.traces, req, span)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.err = err
		return nil, nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.err = err
	}
	return res, b
}

func (c *demoClient) write(method, path, body string) {
	res, b := c.do(method, path, body, nil)
	if res == nil {
		return
	}
	fmt.Fprintf(c.out, "> %s %s %s\n  %d %s", method, path, body, res.StatusCode, b)
	if res.StatusCode == http.StatusAccepted {
		c.token = res.Header.Get("X-Consistency-Token")
	} else if res.StatusCode >= 500 {
		c.err = errors.New(method + " " + path + ": " + res.Status)
	}
}

func (c *demoClient) read(path string) {
	h := http.Header{}
	if c.token != "" {
		h.Set("X-Consistency-Token", c.token)
	}
	res, b := c.do("GET", path, "", h)
	if res == nil {
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "  ", "  ") != nil {
		pretty.Write(b)
	}
	fmt.Fprintf(c.out, "< GET %s  (X-Consistency-Token: %s)\n  %d, X-Stale: %s\n  %s", path, c.token, res.StatusCode,
		res.Header.Get("X-Stale"), pretty.String())
	if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
		c.err = errors.New("GET " + path + ": " + res.Status)
	}
}
