package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/examples/orders/httpapi"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
)

// startCheckout runs the app with a payment deadline of timeout, and
// creates the products tea (stock 10) and cup (stock 1).
func startCheckout(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	e := start(t, true, func(c *app.Config) {
		c.Checkout = checkout.Config{PaymentTimeout: timeout, SlowAnswer: 2 * timeout}
		c.Process = pgprocess.Config{PollInterval: 100 * time.Millisecond, Worker: projections.Config{PollInterval: 50 * time.Millisecond}}
	})
	e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	e.command("POST", "/products", `{"product_id":"cup","name":"Cup","price_cents":1200}`)
	e.command("PUT", "/products/tea/stock", `{"level":10}`)
	e.command("PUT", "/products/cup/stock", `{"level":1}`)
	return e
}

// checkoutOrder places order id (2 tea, 1 cup) and checks it out with card.
func (e *env) checkoutOrder(id, card string) {
	e.t.Helper()
	e.command("POST", "/orders", `{"order_id":"`+id+`","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":2},{"product_id":"cup","quantity":1}]}`)
	e.command("POST", "/orders/"+id+"/checkout", `{"card":"`+card+`"}`)
}

// waitForEnd waits, on the log, for the order's OrderConfirmed or
// OrderCancelled, and returns the order screen once order_view has it.
func (e *env) waitForEnd(id string) httpapi.OrderWithCheckout {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	for recs, err := range e.app.Store.Subscribe(ctx, es.SubscribeOptions{}) {
		if err != nil {
			e.t.Fatalf("wait for the end of order %s: %v", id, err)
		}
		for _, rec := range recs {
			if rec.Stream == orders.OrderStreamPrefix+id && (rec.Type == orders.TypeOrderConfirmed || rec.Type == orders.TypeOrderCancelled) {
				var v httpapi.OrderWithCheckout
				e.read("/orders/"+id+"?after="+rec.Position.String(), "", &v)
				return v
			}
		}
	}
	e.t.Fatalf("order %s did not end", id)
	return httpapi.OrderWithCheckout{}
}

func (e *env) types(stream string) []string {
	e.t.Helper()
	recs, err := e.app.Store.ReadStream(e.t.Context(), stream, es.ReadStreamOptions{})
	if errors.Is(err, es.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("read %s: %v", stream, err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

// reserved returns the units of product reserved, on the write side.
func (e *env) reserved(product string) int {
	e.t.Helper()
	root, err := e.app.Repos.Inventory.Load(e.t.Context(), product)
	if err != nil {
		e.t.Fatal(err)
	}
	return root.State.Reserved
}

type checkoutWant struct {
	status, checkout, reason string
	payment                  []string
	teaHeld, cupHeld         int
}

func (e *env) check(id string, w checkoutWant) {
	e.t.Helper()
	v := e.waitForEnd(id)
	if v.Status != w.status {
		e.t.Errorf("order %s: status %q; want %q", id, v.Status, w.status)
	}
	if v.Checkout == nil {
		e.t.Fatalf("order %s: no checkout in the view", id)
	}
	if v.Checkout.Status != w.checkout || v.Checkout.Reason != w.reason {
		e.t.Errorf("order %s: checkout %+v; want status %q, reason %q", id, *v.Checkout, w.checkout, w.reason)
	}
	if got := e.types(orders.PaymentStreamPrefix + id); !slices.Equal(got, w.payment) {
		e.t.Errorf("order %s: payment stream %v; want %v", id, got, w.payment)
	}
	if got := e.reserved("tea"); got != w.teaHeld {
		e.t.Errorf("order %s: tea reserved %d; want %d", id, got, w.teaHeld)
	}
	if got := e.reserved("cup"); got != w.cupHeld {
		e.t.Errorf("order %s: cup reserved %d; want %d", id, got, w.cupHeld)
	}
}

func TestCheckoutSuccess(t *testing.T) {
	t.Parallel()
	e := startCheckout(t, 30*time.Second)
	e.checkoutOrder("o1", "ok")
	e.check("o1", checkoutWant{status: "paid", checkout: checkout.StatusConfirmed,
		payment: []string{orders.TypePaymentRequested, orders.TypePaymentCaptured}, teaHeld: 2, cupHeld: 1})
	// The stock stays with the confirmed order: the next order for a cup
	// is out of stock, and the shipping flow goes on.
	e.checkoutOrder("o2", "ok")
	e.check("o2", checkoutWant{status: "cancelled", checkout: checkout.StatusCancelled, reason: "out of stock: cup", teaHeld: 2, cupHeld: 1})
	e.command("POST", "/orders/o1/ship", "")
}

func TestCheckoutDeclined(t *testing.T) {
	t.Parallel()
	e := startCheckout(t, 30*time.Second)
	e.checkoutOrder("o1", "decline")
	e.check("o1", checkoutWant{status: "cancelled", checkout: checkout.StatusCancelled, reason: checkout.ReasonDeclined,
		payment: []string{orders.TypePaymentRequested, orders.TypePaymentDeclined}})
}

// No payment in time: the payment is voided, the stock released and the
// order cancelled; the gateway's capture, when it comes, is refused.
func TestCheckoutTimeout(t *testing.T) {
	t.Parallel()
	e := startCheckout(t, time.Second)
	e.checkoutOrder("o1", "slow")
	e.check("o1", checkoutWant{status: "cancelled", checkout: checkout.StatusCancelled, reason: checkout.ReasonTimedOut,
		payment: []string{orders.TypePaymentRequested, orders.TypePaymentVoided}})
	// The late capture: no signal of its refusal but its row, so poll.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := pgprocess.ReadStats(t.Context(), e.app.Sink, checkout.GatewayName)
		if err != nil {
			t.Fatal(err)
		}
		if st.RejectedCommands == 1 && st.Running == 0 {
			// The refusal ended the gateway's instance: nothing is left
			// stuck for an operator.
			if st.Stuck != 0 || st.Failed != 0 {
				t.Errorf("gateway after the refused late capture: %d stuck, %d failed; want 0", st.Stuck, st.Failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's late capture was not refused: %+v", st)
		}
		time.Sleep(50 * time.Millisecond) // polling a row, not synchronizing goroutines
	}
	if got, want := e.types(orders.PaymentStreamPrefix+"o1"), []string{orders.TypePaymentRequested, orders.TypePaymentVoided}; !slices.Equal(got, want) {
		t.Errorf("payment stream after the late capture: %v; want %v", got, want)
	}
}

func TestCheckoutOutOfStock(t *testing.T) {
	t.Parallel()
	e := startCheckout(t, 30*time.Second)
	e.command("PUT", "/products/cup/stock", `{"level":0}`)
	e.checkoutOrder("o1", "ok")
	// tea was reserved, or not yet, when cup was refused: released either
	// way, and no payment asked for.
	e.check("o1", checkoutWant{status: "cancelled", checkout: checkout.StatusCancelled, reason: "out of stock: cup"})
}

func TestCheckoutRefusals(t *testing.T) {
	t.Parallel()
	e := startCheckout(t, 30*time.Second)
	e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":1}]}`)
	before := e.stored()
	for _, c := range []struct{ method, path, body, code string }{
		{"POST", "/orders/o1/checkout", `{"card":"gold"}`, "invalid_request"},
		{"POST", "/orders/o9/checkout", ``, "not_found"},
		{"PUT", "/products/tea/stock", `{"level":-1}`, "invalid_request"},
		{"PUT", "/products/tea/stock", `{}`, "invalid_request"},
		{"PUT", "/products/kettle/stock", `{"level":1}`, "unknown_product"},
	} {
		if r := e.do(c.method, c.path, c.body); r.errorCode(t) != c.code {
			t.Errorf("%s %s %s: %d %s; want %s", c.method, c.path, c.body, r.status, r.body, c.code)
		}
	}
	e.unchanged(before, "refused requests")
	e.command("POST", "/orders/o1/checkout", ``) // the default card
	for _, path := range []string{"/orders/o1/confirm", "/orders/o1/cancel", "/orders/o1/checkout"} {
		if r := e.do("POST", path, ""); r.status != http.StatusConflict || r.errorCode(t) != "order_checking_out" {
			t.Errorf("POST %s during the checkout: %d %s; want 409 order_checking_out", path, r.status, r.body)
		}
	}
	if r := e.do("POST", "/orders/o1/items", `{"product_id":"cup","quantity":1}`); r.status != http.StatusConflict ||
		!strings.Contains(string(r.body), "checkout") {
		t.Errorf("add an item during the checkout: %d %s; want 409", r.status, r.body)
	}
	e.check("o1", checkoutWant{status: "paid", checkout: checkout.StatusConfirmed,
		payment: []string{orders.TypePaymentRequested, orders.TypePaymentCaptured}, teaHeld: 1})
}

// A read of an order with the token of its checkout waits for the
// checkout process too: until the process has seen the checkout, the
// answer is stale; then it shows where the checkout is.
func TestOrderReadWaitsForTheCheckout(t *testing.T) {
	t.Parallel()
	e := start(t, false, func(c *app.Config) { c.ReadWait = 300 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = e.app.Runner.Run(ctx) }) // the projections, not the processes
	e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	e.command("PUT", "/products/tea/stock", `{"level":5}`)
	e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":1}]}`)
	token := e.command("POST", "/orders/o1/checkout", ``)
	pos, err := es.ParsePosition(token)
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.WaitFor(t.Context(), e.app.Sink, readmodel.OrderViewName, pos); err != nil {
		t.Fatal(err)
	}

	r := e.do("GET", "/orders/o1", "", "X-Consistency-Token", token)
	if r.status != http.StatusOK || r.header.Get("X-Stale") != "true" {
		t.Errorf("read before the checkout process ran: %d, X-Stale %q; want 200, true", r.status, r.header.Get("X-Stale"))
	}
	for _, p := range e.app.Processes {
		wg.Go(func() { _ = p.Run(ctx) })
	}
	// The read waits ReadWait at most: on a loaded machine, the follower
	// may take longer than that to start.
	if err := projections.WaitFor(t.Context(), e.app.Sink, checkout.Projection, pos); err != nil {
		t.Fatal(err)
	}
	var v httpapi.OrderWithCheckout
	e.read("/orders/o1", token, &v)
	if v.Checkout == nil || v.Checkout.Status == "" {
		t.Errorf("read after the checkout process ran: checkout %+v; want its state", v.Checkout)
	}
}

// An event the checkout cannot decode stalls its log follower: /healthz
// names it, and the rest of the app keeps running.
func TestStalledCheckoutInHealth(t *testing.T) {
	t.Parallel()
	stalled := make(chan projections.WorkerStatus, 10)
	e := startWith(t, true, func(c *app.Config) {
		c.Process.Runner.OnChange = func(s projections.WorkerStatus) {
			if s.State == projections.WorkerStalled && s.Name == checkout.Projection {
				stalled <- s
			}
		}
	})
	tok := e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	var page readmodel.ProductOrdersPage
	e.read("/products/tea/orders", tok, &page)
	if h, body := e.health(); h != "ok" {
		t.Errorf("health before the stall: %s %q, want ok", h, body)
	}
	bad, err := e.app.Store.Append(t.Context(), orders.OrderStreamPrefix+"bad", es.NoStream, es.EventData{
		Type: orders.TypeOrderCheckoutStarted, Data: []byte(`{"order_id":"bad","lines":"none"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the checkout did not stall")
	}
	tok = e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":1}]}`)
	e.read("/products/tea/orders", tok, &page)
	h, body := e.health()
	want := fmt.Sprintf(`%s stalled at %s: event %sbad@%d (type %q): `, checkout.Projection, bad.Position, orders.OrderStreamPrefix, bad.Version, orders.TypeOrderCheckoutStarted)
	if h != "degraded" || !strings.HasPrefix(body, "degraded: "+want) || strings.Count(body, " stalled ") != 1 {
		t.Errorf("health with the checkout stalled: %s %q, want degraded with %q alone", h, body, want)
	}
}
