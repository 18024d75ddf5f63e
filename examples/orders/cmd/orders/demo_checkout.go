package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/examples/orders/httpapi"
)

// demoCheckout is the demo's checkout: a payment deadline of a few
// seconds, so that the timeout shows without a long wait.
var demoCheckout = checkout.Config{PaymentTimeout: 3 * time.Second}

// checkoutScenario sets stock and checks out four orders, one per outcome
// of the checkout process, and prints each order's view once its checkout
// ended.
func checkoutScenario(c *demoClient) {
	c.section(fmt.Sprintf("Checkout, a process manager: reserve stock, take the payment within %s, confirm or cancel", demoCheckout.PaymentTimeout))
	c.write("PUT", "/products/tea/stock", `{"level":50}`)
	c.write("PUT", "/products/cup/stock", `{"level":10}`)
	c.write("PUT", "/products/pot/stock", `{"level":1}`)
	outcomes := []struct{ id, lines, card, what string }{
		{"o-2001", `[{"product_id":"tea","quantity":2},{"product_id":"cup","quantity":1}]`, "ok", "the payment is captured: confirmed and paid, the stock stays reserved"},
		{"o-2002", `[{"product_id":"tea","quantity":1}]`, "decline", "the card is declined: the stock is released, the order cancelled"},
		{"o-2003", `[{"product_id":"cup","quantity":2}]`, "slow", "no payment in time: the payment is voided (the gateway's late capture is refused), the stock released, the order cancelled"},
		{"o-2004", `[{"product_id":"tea","quantity":1},{"product_id":"pot","quantity":2}]`, "ok", "a line is out of stock: what was reserved is released, the order cancelled, no payment asked for"},
	}
	for _, o := range outcomes {
		c.write("POST", "/orders", `{"order_id":"`+o.id+`","customer_id":"c-5","customer_name":"Eve Park","lines":`+o.lines+`}`)
		c.write("POST", "/orders/"+o.id+"/checkout", `{"card":"`+o.card+`"}`)
	}
	for _, o := range outcomes {
		c.section(o.id + " (card " + o.card + "): " + o.what)
		c.waitCheckout(o.id, 2*demoCheckout.PaymentTimeout+10*time.Second)
		c.read("/orders/" + o.id)
	}
	c.section("While a checkout runs, only the process confirms or cancels the order")
	c.write("POST", "/orders", `{"order_id":"o-2005","customer_id":"c-5","customer_name":"Eve Park","lines":[{"product_id":"tea","quantity":1}]}`)
	c.write("POST", "/orders/o-2005/checkout", `{"card":"slow"}`)
	c.write("POST", "/orders/o-2005/cancel", "")
}

// waitCheckout asks for the order until its checkout has ended and the
// order view shows the outcome (the process decides before the order's
// event is written), for at most wait: the HTTP API has no signal for it.
func (c *demoClient) waitCheckout(id string, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for c.err == nil {
		res, b := c.do("GET", "/orders/"+id, "", nil)
		if res == nil {
			return
		}
		var v httpapi.OrderWithCheckout
		if res.StatusCode == http.StatusOK && json.Unmarshal(b, &v) == nil && v.Checkout != nil {
			switch v.Checkout.Status {
			case checkout.StatusConfirmed, checkout.StatusCancelled:
				if v.Status != string(orders.StatusPlaced) {
					return
				}
			case checkout.StatusFailed:
				c.err = errors.New("the checkout of " + id + " failed: " + v.Checkout.Error)
				return
			}
		}
		if time.Now().After(deadline) {
			c.err = fmt.Errorf("the checkout of %s did not end within %s: %s", id, wait, b)
			return
		}
		select {
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
