package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/httpapi"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

var quiet = slog.New(slog.DiscardHandler)

type env struct {
	t      *testing.T
	app    *app.App
	srv    *httptest.Server
	search bool
}

// start runs the app on a schema of its own, with Elasticsearch unless
// STRATA_SKIP_ELASTIC=1, and serves its API.
func start(t *testing.T, runWorkers bool, options ...func(*app.Config)) *env {
	t.Helper()
	return startWith(t, runWorkers, func(c *app.Config) {
		for _, o := range options {
			o(c)
		}
	})
}

// startWith is start with tune, when not nil, changing the app's config.
func startWith(t *testing.T, runWorkers bool, tune func(*app.Config)) *env {
	t.Helper()
	pool, schema := pgtest.NewSchemaWith(t, pgtest.SchemaConfig{MaxConns: 24})
	cfg := app.Config{Pool: pool, Schema: schema, Logger: quiet, ReadWait: 5 * time.Second,
		PollInterval: 50 * time.Millisecond, Worker: projections.Config{Logger: quiet, PollInterval: 50 * time.Millisecond}}
	e := &env{t: t}
	if os.Getenv(elastictest.EnvSkip) != "1" {
		cfg.Elastic = elastictest.Client(t)
		cfg.SearchAlias = elastictest.Name(t)
		e.search = true
	}
	if tune != nil {
		tune(&cfg)
	}
	a, err := app.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	if runWorkers {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				t.Errorf("workers: %v", err)
			}
		})
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	e.srv = httptest.NewServer(a.Handler)
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var b httpapi.ErrorBody
	r.decode(t, &b)
	if b.Error.Message == "" {
		t.Fatalf("error without a message: %s", r.body)
	}
	return b.Error.Code
}

func (e *env) do(method, path, body string, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if method == "POST" || method == "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// command sends a command and returns its consistency token.
func (e *env) command(method, path, body string) string {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
	var acc httpapi.Accepted
	r.decode(e.t, &acc)
	if acc.ConsistencyToken == "" || acc.ConsistencyToken != r.header.Get("X-Consistency-Token") || acc.Version < 1 {
		e.t.Fatalf("%s %s: accepted %+v, header token %q", method, path, acc, r.header.Get("X-Consistency-Token"))
	}
	return acc.ConsistencyToken
}

// read GETs path with a consistency token and wants a fresh 200.
func (e *env) read(path, token string, v any) {
	e.t.Helper()
	r := e.do("GET", path, "", "X-Consistency-Token", token)
	if r.status != http.StatusOK || r.header.Get("X-Stale") != "false" {
		e.t.Fatalf("GET %s after %s: %d (X-Stale %q) %s", path, token, r.status, r.header.Get("X-Stale"), r.body)
	}
	r.decode(e.t, v)
}

func (e *env) head() es.Position {
	e.t.Helper()
	h, err := e.app.Store.Head(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// stored counts the events in the store's table. Unlike the head of the
// log, it does not wait for transactions of other tests to end: the server
// is shared, and the head is gated behind its oldest open transaction.
func (e *env) stored() int64 {
	e.t.Helper()
	var n int64
	if err := e.app.Pool.QueryRow(e.t.Context(), `SELECT count(*) FROM `+pgx.Identifier{e.app.Schema, "events"}.Sanitize()).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	e := start(t, true)

	e.command("POST", "/products", `{"product_id":"tea","name":"Assam Tea","price_cents":450}`)
	e.command("POST", "/products", `{"product_id":"cup","name":"Blue Cup","price_cents":1200}`)
	tok := e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann Smith",
		"lines":[{"product_id":"tea","quantity":2},{"product_id":"cup","quantity":1}]}`)

	// Read your own write: the order screen, in one call.
	var o1 readmodel.OrderView
	e.read("/orders/o1", tok, &o1)
	if o1.CustomerName != "Ann Smith" || o1.Status != "placed" || o1.TotalCents != 2100 || o1.ItemCount != 3 ||
		len(o1.Lines) != 2 || o1.Lines[0].ProductName != "Assam Tea" || o1.Lines[1].LineTotalCents != 1200 {
		t.Fatalf("order view: %+v", o1)
	}

	e.command("POST", "/orders", `{"order_id":"o2","customer_id":"c2","customer_name":"Bob Jones","lines":[{"product_id":"tea","quantity":1}]}`)
	e.command("POST", "/orders/o2/items", `{"product_id":"cup","quantity":3}`)
	e.command("DELETE", "/orders/o2/items/cup", "")
	e.command("POST", "/orders/o2/confirm", "")
	e.command("POST", "/orders/o2/pay", `{"amount_cents":450}`)
	tok = e.command("POST", "/orders/o2/ship", "")
	var o2 readmodel.OrderView
	e.read("/orders/o2?after="+tok, "", &o2)
	if o2.Status != "shipped" || o2.TotalCents != 450 || len(o2.Lines) != 1 {
		t.Fatalf("order o2: %+v", o2)
	}

	// A rename reaches the open order and the shipped one.
	tok = e.command("POST", "/products/tea/rename", `{"name":"Green Tea"}`)
	for _, id := range []string{"o1", "o2"} {
		var v readmodel.OrderView
		e.read("/orders/"+id, tok, &v)
		if v.Lines[0].ProductName != "Green Tea" {
			t.Fatalf("order %s after the rename: %+v", id, v.Lines)
		}
	}

	// Which orders contain tea?
	var page readmodel.ProductOrdersPage
	e.read("/products/tea/orders", tok, &page)
	if len(page.Orders) != 2 || page.Orders[0].OrderID != "o2" || page.Orders[1].OrderID != "o1" {
		t.Fatalf("orders of tea: %+v", page)
	}
	e.read("/products/tea/orders?status=shipped", tok, &page)
	if len(page.Orders) != 1 || page.Orders[0].OrderID != "o2" || page.Orders[0].Quantity != 1 {
		t.Fatalf("shipped orders of tea: %+v", page)
	}
	e.read("/products/tea/orders?limit=1", tok, &page)
	if len(page.Orders) != 1 || page.NextCursor == "" {
		t.Fatalf("first page: %+v", page)
	}
	cursor := page.NextCursor
	page = readmodel.ProductOrdersPage{}
	e.read("/products/tea/orders?limit=1&cursor="+cursor, tok, &page)
	if len(page.Orders) != 1 || page.Orders[0].OrderID != "o1" || page.NextCursor != "" {
		t.Fatalf("second page: %+v", page)
	}
	e.read("/products/cup/orders?from=2000-01-01&to="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), tok, &page)
	if len(page.Orders) != 1 || page.Orders[0].OrderID != "o1" {
		t.Fatalf("orders of cup (o2's cup was removed): %+v", page)
	}
	e.read("/products/cup/orders?to=2000-01-01", tok, &page)
	if len(page.Orders) != 0 {
		t.Fatalf("orders of cup before 2000: %+v", page)
	}

	// Search.
	if e.search {
		var res readmodel.SearchResult
		e.read("/orders/search?q=green+tea", tok, &res)
		if res.Total != 2 {
			t.Fatalf("search green tea: %+v", res)
		}
		e.read("/orders/search?q=ann", tok, &res)
		if res.Total != 1 || res.Orders[0].OrderID != "o1" || res.Orders[0].ProductNames[0] != "Green Tea" {
			t.Fatalf("search ann: %+v", res)
		}
		e.read("/orders/search?status=shipped&min_total=100&max_total=500", tok, &res)
		if res.Total != 1 || res.Orders[0].OrderID != "o2" {
			t.Fatalf("search shipped: %+v", res)
		}
		e.read("/orders/search?sort=-total&limit=1", tok, &res)
		if res.Total != 2 || len(res.Orders) != 1 || res.Orders[0].OrderID != "o1" {
			t.Fatalf("search by total: %+v", res)
		}
	} else {
		r := e.do("GET", "/orders/search?q=tea", "")
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "search_off" {
			t.Fatalf("search while off: %d %s", r.status, r.body)
		}
	}

	tok = e.command("POST", "/orders/o1/cancel", `{"reason":"changed my mind"}`)

	// Bad input: a clear 4xx JSON error, and nothing written.
	before := e.stored()
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/orders", `{"customer_id":"c3",`, 400, "invalid_json"},
		{"POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"tea","quantity":1}],"coupon":"X"}`, 400, "invalid_json"},
		{"POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"tea","quantity":"1"}]}`, 400, "invalid_json"},
		{"POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"tea","quantity":-2}]}`, 400, "invalid_request"},
		{"POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[]}`, 400, "invalid_request"},
		{"POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"nope","quantity":1}]}`, 400, "unknown_product"},
		{"POST", "/orders/o1/items", `{"product_id":"cup","quantity":1}`, 409, "order_cancelled"},
		{"POST", "/orders/o1/confirm", "", 409, "order_cancelled"},
		{"POST", "/orders/o2/cancel", "", 409, "order_shipped"},
		{"POST", "/products/tea/rename", `{"name":""}`, 400, "invalid_request"},
		{"POST", "/products/tea/rename", `{"name":"   "}`, 400, "invalid_request"},
		{"POST", "/products/nope/rename", `{"name":"X"}`, 404, "not_found"},
		{"POST", "/orders/nope/confirm", "", 404, "not_found"},
		{"POST", "/products", `{"product_id":"tea","name":"Again","price_cents":1}`, 409, "already_exists"},
		{"GET", "/orders/nope", "", 404, "not_found"},
		{"GET", "/orders/o1?after=yesterday", "", 400, "invalid_consistency_token"},
		{"GET", "/products/tea/orders?status=lost", "", 400, "invalid_parameter"},
		{"GET", "/products/tea/orders?cursor=xyz", "", 400, "invalid_cursor"},
		{"GET", "/nowhere", "", 404, "not_found"},
	} {
		r := e.do(c.method, c.path, c.body)
		if r.status != c.status || r.errorCode(t) != c.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, r.status, r.body, c.status, c.code)
		}
	}
	e.unchanged(before, "bad input")
	r := e.do("POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"tea","quantity":-2}]}`)
	var eb httpapi.ErrorBody
	r.decode(t, &eb)
	if len(eb.Error.Fields) != 1 || eb.Error.Fields[0].Field != "lines[0].quantity" {
		t.Errorf("negative quantity: %s", r.body)
	}

	// The cancel is visible; a token from the future answers stale.
	var v readmodel.OrderView
	e.read("/orders/o1", tok, &v)
	if v.Status != "cancelled" {
		t.Fatalf("o1 after cancel: %+v", v)
	}
	r = e.do("GET", "/orders/o1", "", "X-Consistency-Token", "999999999:999999999")
	if r.status != http.StatusOK || r.header.Get("X-Stale") != "true" {
		t.Fatalf("read with an unreached token: %d %q %s", r.status, r.header.Get("X-Stale"), r.body)
	}

	// Idempotent retries.
	body := `{"order_id":"o3","customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"cup","quantity":1}]}`
	r1 := e.do("POST", "/orders", body, "Idempotency-Key", "k1")
	r2 := e.do("POST", "/orders", body, "Idempotency-Key", "k1")
	if r1.status != 202 || r2.status != 202 || !bytes.Equal(r1.body, r2.body) {
		t.Fatalf("retried place order: %d %s / %d %s", r1.status, r1.body, r2.status, r2.body)
	}
}

func TestReadModelBuilding(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	tok := e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	// The log must show the event before "not built yet" can be told from
	// "nothing to build": an open transaction of another test on the shared
	// server can hold readers back for a moment.
	pos, err := es.ParsePosition(tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		head, err := e.app.Store.Head(ctx)
		if err != nil {
			t.Fatalf("waiting for the log to show the product: %v", err)
		}
		if !head.Before(pos) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the log did not show %s within a minute", pos)
		case <-time.After(5 * time.Millisecond):
		}
	}
	for _, path := range []string{"/orders/o1", "/products/tea/orders"} {
		r := e.do("GET", path, "")
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "read_model_building" {
			t.Fatalf("GET %s before the projection ran: %d %s", path, r.status, r.body)
		}
	}
	// Bad input is refused as such, built or not.
	bad := "/products/tea/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("2026-01-01T00:00:00Z|o\xff"))
	if r := e.do("GET", bad, ""); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_cursor" {
		t.Fatalf("GET %s before the projection ran: %d %s, want 400 invalid_cursor", bad, r.status, r.body)
	}
}

// An item added to an order that an earlier batch projected keeps the
// product names of the order's other lines, in order_view and in search.
func TestAddItemKeepsProductNames(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	e.command("POST", "/products", `{"product_id":"tea","name":"Assam Tea","price_cents":450}`)
	e.command("POST", "/products", `{"product_id":"cup","name":"Blue Cup","price_cents":1200}`)
	tok := e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":2}]}`)
	var v readmodel.OrderView
	e.read("/orders/o1", tok, &v) // projected, in a batch of its own
	tok = e.command("POST", "/orders/o1/items", `{"product_id":"cup","quantity":1}`)
	e.read("/orders/o1", tok, &v)
	want := []string{"Assam Tea", "Blue Cup"}
	var got []string
	for _, l := range v.Lines {
		got = append(got, l.ProductName)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order_view product names after adding an item: %q, want %q", got, want)
	}
	tok = e.command("DELETE", "/orders/o1/items/cup", "")
	e.read("/orders/o1", tok, &v)
	if len(v.Lines) != 1 || v.Lines[0].ProductName != "Assam Tea" {
		t.Errorf("order_view lines after removing an item: %+v, want Assam Tea alone", v.Lines)
	}
	if e.search {
		var res readmodel.SearchResult
		e.read("/orders/search?q=assam", tok, &res)
		if res.Total != 1 || !slices.Equal(res.Orders[0].ProductNames, []string{"Assam Tea"}) {
			t.Errorf("search for assam after the item changes: %+v, want o1 with [Assam Tea]", res)
		}
	}
}

// An order placed before customers had IDs (OrderPlaced.v1) reaches the
// projections, which list only OrderPlaced: the registry upcasts it.
func TestOldOrderPlacedReachesTheReadModels(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	v1 := `{"order_id":"o1","customer":"Ann","items":[{"product_id":"tea","qty":2,"unit_price":"4.5"}]}`
	res, err := e.app.Store.Append(t.Context(), "order-o1", es.NoStream, es.EventData{Type: orders.TypeOrderPlacedV1, Data: []byte(v1)})
	if err != nil {
		t.Fatal(err)
	}
	tok := res.Position.String()
	var v readmodel.OrderView
	e.read("/orders/o1", tok, &v)
	if v.CustomerID != "legacy:Ann" || v.TotalCents != 900 || len(v.Lines) != 1 || v.Lines[0].ProductName != "Tea" {
		t.Errorf("order_view of the v1 order: %+v; want customer legacy:Ann, total 900, one line of Tea", v)
	}
	var byProduct struct {
		Orders []readmodel.ProductOrder `json:"orders"`
	}
	e.read("/products/tea/orders", tok, &byProduct)
	if len(byProduct.Orders) != 1 || byProduct.Orders[0].OrderID != "o1" || byProduct.Orders[0].Quantity != 2 {
		t.Errorf("orders_by_product of tea: %+v; want o1 with quantity 2", byProduct.Orders)
	}
}
