package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
)

// health GETs /healthz and returns its X-Health header and body.
func (e *env) health() (string, string) {
	e.t.Helper()
	res, err := http.Get(e.srv.URL + "/healthz")
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		e.t.Fatalf("GET /healthz: %d, Content-Type %q, want 200 and text/plain", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return res.Header.Get("X-Health"), string(b)
}

// TestStalledProjectionIsolated stalls order_view on an event it cannot
// decode: the process keeps running, the write API accepts commands, the
// other read models keep following the log, order_view answers stale reads,
// and /healthz names the stall.
func TestStalledProjectionIsolated(t *testing.T) {
	t.Parallel()
	stalled := make(chan projections.WorkerStatus, 10)
	e := startWith(t, true, func(c *app.Config) {
		c.Runner.OnChange = func(s projections.WorkerStatus) {
			if s.State == projections.WorkerStalled && s.Name == readmodel.OrderViewName {
				stalled <- s
			}
		}
	})
	if h, body := e.health(); h != "ok" || body != "ok\n" {
		t.Errorf("health before the stall: %s %q, want ok", h, body)
	}
	e.command("POST", "/products", `{"product_id":"tea","name":"Assam Tea","price_cents":450}`)
	tok := e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann Smith","lines":[{"product_id":"tea","quantity":2}]}`)
	var o1 readmodel.OrderView
	e.read("/orders/o1", tok, &o1)

	// order_view (and order_search) handle ProductCreated; orders_by_product
	// does not.
	bad, err := e.app.Store.Append(t.Context(), orders.ProductStreamPrefix+"bad", es.NoStream, es.EventData{
		Type: orders.TypeProductCreated, Data: []byte(`{"product_id":"bad","name":"Bad","price_cents":"free"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("order_view did not stall")
	}

	// The write API still accepts commands, and orders_by_product follows.
	tok = e.command("POST", "/orders", `{"order_id":"o2","customer_id":"c2","customer_name":"Bob Jones","lines":[{"product_id":"tea","quantity":1}]}`)
	var page readmodel.ProductOrdersPage
	e.read("/products/tea/orders", tok, &page)
	if len(page.Orders) != 2 {
		t.Errorf("orders of tea after the stall: %+v, want o1 and o2", page.Orders)
	}
	// order_view answers what it has, marked stale.
	r := e.do("GET", "/orders/o1", "", "X-Consistency-Token", tok)
	if r.status != http.StatusOK || r.header.Get("X-Stale") != "true" {
		t.Errorf("GET /orders/o1 with order_view stalled: %d (X-Stale %q) %s, want 200 and stale", r.status, r.header.Get("X-Stale"), r.body)
	}

	h, body := e.health()
	want := fmt.Sprintf(`order_view stalled at %s: event %sbad@%d (type "ProductCreated"): `,
		bad.Position, orders.ProductStreamPrefix, bad.Version)
	if h != "degraded" || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, want) {
		t.Errorf("health with order_view stalled: %s %q, want degraded with %q", h, body, want)
	}
	if strings.Contains(body, readmodel.OrdersByProductName) {
		t.Errorf("health names %s, which runs: %q", readmodel.OrdersByProductName, body)
	}
}
