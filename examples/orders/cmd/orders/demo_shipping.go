package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

const kafkaHowTo = "To turn it on: install Java 17+ and mvn, then run `make demo` again " +
	"(scripts/ensure-kafka.sh fetches Kafka), or set " + cli.EnvKafkaBrokers + " to a Kafka cluster."

// startKafka starts a throwaway Kafka broker when Kafka is installed. It
// returns the bootstrap address, a function that stops the broker, and,
// when there is no broker, why.
func startKafka(ctx context.Context, say func(string, ...any)) (addr string, stop func(), off string) {
	if _, err := kafkatest.FindHome(); err != nil {
		return "", func() {}, "publishing to Kafka is off: Kafka is not installed. " + kafkaHowTo
	}
	say("Starting a throwaway Kafka broker...")
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	srv, err := kafkatest.Start(sctx, kafkatest.ServerConfig{})
	if err != nil {
		return "", func() {}, "publishing to Kafka is off: Kafka did not start (" + firstLine(err) + "). " + kafkaHowTo
	}
	return srv.URL(), func() { srv.Stop() }, ""
}

// startShipping runs the shipping service's binary (examples/shipping) on
// its own schema of the same database, consuming from brokers, and waits
// until it answers. It returns its base URL and a function that stops it.
func startShipping(ctx context.Context, bin, dbURL, brokers string) (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--database-url", dbURL, "--kafka-brokers", brokers, "--addr", addr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		cmd.Process.Signal(os.Interrupt) //nolint:errcheck // it may be gone
		select {
		case <-exited: //nolint:errcheck // an interrupted service exits non-zero; its logs went to the buffer
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // it may be gone
			<-exited           //nolint:errcheck // killed: its exit status says so
		}
	}
	base = "http://" + addr
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/healthz", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			return base, stop, nil
		}
		select {
		case err := <-exited:
			return "", nil, fmt.Errorf("%s exited (%v): %s", bin, err, strings.TrimSpace(logs.String()))
		case <-deadline.C:
			stop()
			return "", nil, fmt.Errorf("%s did not answer at %s within a minute: %s", bin, base, strings.TrimSpace(logs.String()))
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// await reads path of the shipping service until the answer satisfies
// done (the message has travelled: a command in one service, its event
// in the log, the message in Kafka, the other service's read model),
// then prints it and how long it took.
func (c *demoClient) await(base, path, what string, done func(map[string]any) bool) {
	if c.err != nil {
		return
	}
	start := time.Now()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(c.ctx, "GET", base+path, nil)
		if err != nil {
			c.err = err
			return
		}
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var v map[string]any
			if res.StatusCode == http.StatusOK && json.Unmarshal(b, &v) == nil && done(v) {
				var pretty bytes.Buffer
				if json.Indent(&pretty, b, "  ", "  ") != nil {
					pretty.Write(b)
				}
				fmt.Fprintf(c.out, "< GET (shipping) %s  after %s: %s\n  %d\n  %s", path,
					time.Since(start).Round(time.Millisecond), what, res.StatusCode, pretty.String())
				return
			}
		}
		select {
		case <-deadline.C:
			c.err = fmt.Errorf("the shipping service did not show %s at %s within 30s", what, path)
			return
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
			return
		case <-tick.C:
		}
	}
}

// shippingScenario shows order events reaching the shipping service.
func shippingScenario(c *demoClient, shipping string) {
	c.section("Another service: shipping hears of orders through Kafka only (topic orders.v1)")
	fmt.Fprintf(c.out, "  orders publishes order.*.v1 integration events, each batch and its checkpoint in one\n"+
		"  Kafka transaction; shipping keeps its own copy of the orders and turns confirmed and\n"+
		"  cancelled orders into commands on its own Shipment aggregate, in its own schema.\n")
	c.write("POST", "/orders/o-1001/confirm", "")
	c.await(shipping, "/shipments/o-1001", "its copy of the order, confirmed, and a requested shipment", func(v map[string]any) bool {
		return field(v, "order", "status") == "confirmed" && field(v, "shipment", "status") == "requested"
	})
	c.write("POST", "/orders/o-1001/cancel", `{"reason":"customer changed their mind"}`)
	c.await(shipping, "/shipments/o-1001", "the shipment cancelled", func(v map[string]any) bool {
		return field(v, "order", "status") == "cancelled" && field(v, "shipment", "status") == "cancelled"
	})
	c.await(shipping, "/shipments/o-1002", "the order shipped earlier", func(v map[string]any) bool {
		return field(v, "order", "status") == "shipped" && field(v, "shipment", "status") == "requested"
	})
}

func field(v map[string]any, obj, key string) string {
	o, _ := v[obj].(map[string]any)
	s, _ := o[key].(string)
	return s
}
