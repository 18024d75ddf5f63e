package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/stratadev/strata/examples/orders/app"
	"github.com/stratadev/strata/examples/orders/httpapi"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

// seed creates the products tea and cup and the order o1 (tea), and
// returns the token of the order.
func (e *env) seed() string {
	e.t.Helper()
	e.command("POST", "/products", `{"product_id":"tea","name":"Tea","price_cents":450}`)
	e.command("POST", "/products", `{"product_id":"cup","name":"Cup","price_cents":1200}`)
	return e.command("POST", "/orders", `{"order_id":"o1","customer_id":"c1","customer_name":"Ann","lines":[{"product_id":"tea","quantity":1}]}`)
}

// unchanged fails the test if the log moved since before.
func (e *env) unchanged(before int64, what string) {
	e.t.Helper()
	if after := e.stored(); after != before {
		e.t.Errorf("%s changed the number of stored events from %d to %d", what, before, after)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	e.seed()
	e.command("POST", "/orders", `{"order_id":"o2","customer_id":"c2","customer_name":"Bob","lines":[{"product_id":"tea","quantity":1}]}`)
	place := `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"cup","quantity":1}]}`

	// A retry with the key is the first request's answer, even when the
	// server chose the ID.
	for _, c := range []struct{ name, method, path, body, key string }{
		{"server-chosen order ID", "POST", "/orders", place, "place-1"},
		{"server-chosen product ID", "POST", "/products", `{"name":"Jug","price_cents":900}`, "create-1"},
		{"add item", "POST", "/orders/o1/items", `{"product_id":"cup","quantity":2}`, "add-1"},
		{"confirm without a body", "POST", "/orders/o2/confirm", "", "confirm-1"},
	} {
		r1 := e.do(c.method, c.path, c.body, "Idempotency-Key", c.key)
		before := e.stored()
		r2 := e.do(c.method, c.path, c.body, "Idempotency-Key", c.key)
		if r1.status != http.StatusAccepted || r2.status != http.StatusAccepted || !bytes.Equal(r1.body, r2.body) {
			t.Errorf("%s: first %d %s, retry %d %s; want the same 202 twice", c.name, r1.status, r1.body, r2.status, r2.body)
		}
		e.unchanged(before, c.name+": the retry")
	}

	// The key used again for anything else is refused, and writes nothing.
	before := e.stored()
	for _, c := range []struct{ name, method, path, body, key string }{
		{"another body", "POST", "/orders", `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"cup","quantity":5}]}`, "place-1"},
		{"another body with the order ID", "POST", "/orders", `{"order_id":"o9","customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"cup","quantity":1}]}`, "place-1"},
		{"another quantity", "POST", "/orders/o1/items", `{"product_id":"cup","quantity":3}`, "add-1"},
		{"another order", "POST", "/orders/o2/items", `{"product_id":"cup","quantity":2}`, "add-1"},
		{"another endpoint", "POST", "/orders/o1/confirm", "", "add-1"},
		{"another order, no body", "POST", "/orders/o1/confirm", "", "confirm-1"},
	} {
		r := e.do(c.method, c.path, c.body, "Idempotency-Key", c.key)
		if r.status != http.StatusUnprocessableEntity || r.errorCode(t) != "idempotency_key_reused" {
			t.Errorf("%s: %d %s, want 422 idempotency_key_reused", c.name, r.status, r.body)
		}
	}
	for _, key := range []string{strings.Repeat("k", 201), "two words", "tab\tkey"} {
		r := e.do("POST", "/orders/o1/confirm", "", "Idempotency-Key", key)
		if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_idempotency_key" {
			t.Errorf("key %q: %d %s, want 400 invalid_idempotency_key", key, r.status, r.body)
		}
	}
	e.unchanged(before, "a reused key")

	// A request that fails validation binds nothing: corrected, it goes
	// through with the same key.
	r := e.do("POST", "/orders", `{"customer_id":"c4","customer_name":"","lines":[{"product_id":"cup","quantity":1}]}`, "Idempotency-Key", "place-2")
	if r.status != http.StatusBadRequest {
		t.Fatalf("invalid order: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/orders", `{"customer_id":"c4","customer_name":"Di","lines":[{"product_id":"cup","quantity":1}]}`, "Idempotency-Key", "place-2")
	if r.status != http.StatusAccepted {
		t.Errorf("corrected order with the same key: %d %s, want 202", r.status, r.body)
	}
}

func TestWritesNeedJSON(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	e.seed()
	before := e.stored()
	place := `{"customer_id":"c3","customer_name":"Cy","lines":[{"product_id":"cup","quantity":1}]}`
	for _, c := range []struct{ path, body, contentType string }{
		{"/orders", place, "text/plain"},
		{"/orders", place, "text/plain;charset=UTF-8"},
		{"/orders", "customer_id=c3", "application/x-www-form-urlencoded"},
		{"/orders", place, "multipart/form-data; boundary=x"},
		{"/orders", place, ""},
		{"/orders", place, "application/json-patch+json"},
		{"/orders/o1/confirm", "", "text/plain"},
		{"/orders/o1/cancel", "", "application/x-www-form-urlencoded"},
		{"/products/tea/rename", `{"name":"X"}`, "text/plain"},
	} {
		r := e.do("POST", c.path, c.body, "Content-Type", c.contentType)
		if r.status != http.StatusUnsupportedMediaType || r.errorCode(t) != "unsupported_media_type" {
			t.Errorf("POST %s as %q: %d %s, want 415 unsupported_media_type", c.path, c.contentType, r.status, r.body)
		}
	}
	e.unchanged(before, "a write that is not JSON")
	r := e.do("POST", "/orders", place, "Content-Type", "application/json; charset=utf-8")
	if r.status != http.StatusAccepted {
		t.Errorf("POST /orders as application/json; charset=utf-8: %d %s, want 202", r.status, r.body)
	}
}

// errorLog counts the ERROR records logged.
type errorLog struct {
	mu     sync.Mutex
	errors []string
}

func (l *errorLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		l.errors = append(l.errors, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func TestInvalidPath(t *testing.T) {
	t.Parallel()
	logs := &errorLog{}
	e := start(t, true, func(c *app.Config) { c.Logger = slog.New(logs) })
	tok := e.seed()
	var v readmodel.OrderView
	e.read("/orders/o1", tok, &v)
	before := e.stored()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/orders/%00", ""},
		{"GET", "/orders/o%001", ""},
		{"GET", "/orders/%ff", ""},
		{"GET", "/orders/%C3%28", ""},
		{"GET", "/orders/a%0Ab", ""},
		{"GET", "/products/%ff/orders", ""},
		{"GET", "/products/%00/orders", ""},
		{"POST", "/orders/%00/confirm", ""},
		{"POST", "/orders/%ff/items", `{"product_id":"tea","quantity":1}`},
		{"DELETE", "/orders/o1/items/%ff", ""},
		{"GET", "/products/tea/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("2026-01-01T00:00:00Z|o\x00")), ""},
		{"GET", "/products/tea/orders?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("2026-01-01T00:00:00Z|o\xff")), ""},
		{"POST", "/products/%00/rename", `{"name":"X"}`},
	} {
		r := e.do(c.method, c.path, c.body)
		want := "invalid_path"
		if strings.Contains(c.path, "cursor=") {
			want = "invalid_cursor"
		}
		if r.status != http.StatusBadRequest || r.errorCode(t) != want {
			t.Errorf("%s %s: %d %s, want 400 %s", c.method, c.path, r.status, r.body, want)
		}
	}
	e.unchanged(before, "an invalid path")
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.errors) > 0 {
		t.Errorf("invalid paths logged %d ERROR records: %q", len(logs.errors), logs.errors)
	}
}

func TestSearchLimits(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	if !e.search {
		t.Skip("search is off")
	}
	tok := e.seed()
	var res readmodel.SearchResult
	e.read("/orders/search?q=tea", tok, &res)
	for _, c := range []struct{ name, query string }{
		{"q of 201 characters", "q=" + strings.Repeat("a", 201)},
		{"q of 100k characters", "q=" + strings.Repeat("tea+", 25_000)},
		{"offset past the window", "offset=10001"},
		{"offset and limit past the window", "offset=9990&limit=20"},
		{"offset and the default limit past the window", "offset=9990"},
	} {
		began := time.Now()
		r := e.do("GET", "/orders/search?"+c.query, "")
		if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_parameter" {
			t.Errorf("%s: %d %s, want 400 invalid_parameter", c.name, r.status, r.body)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("%s: answered in %s", c.name, d)
		}
	}
	for _, q := range []string{"q=" + strings.Repeat("é", 200), "offset=9980&limit=20"} {
		if r := e.do("GET", "/orders/search?"+q, ""); r.status != http.StatusOK {
			t.Errorf("search %.40s: %d %s, want 200", q, r.status, r.body)
		}
	}
}

// frozen is a TCP server that accepts connections and never answers.
func frozen(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// closedAddr returns the URL of a port nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestSearchUnavailable(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	if !e.search {
		t.Skip("search is off")
	}
	tok := e.seed()
	var res readmodel.SearchResult
	e.read("/orders/search", tok, &res) // order_search is built
	for _, c := range []struct{ name, url string }{
		{"frozen", frozen(t)},
		{"down", closedAddr(t)},
	} {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{c.url}, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(httpapi.New(httpapi.Config{Bus: e.app.Bus, Store: e.app.Store, Reader: e.app.Reader,
			Checkpoints: e.app.Sink, Logger: quiet, SearchTimeout: 500 * time.Millisecond,
			Search: &readmodel.Search{Client: client}}))
		t.Cleanup(srv.Close)
		for _, path := range []string{"/orders/search?q=tea", "/orders/search?q=tea&after=" + tok} {
			began := time.Now()
			res, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if d := time.Since(began); res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || d > 10*time.Second {
				t.Errorf("%s Elasticsearch, GET %s: %d, Retry-After %q, in %s; want 503 with Retry-After within the timeout",
					c.name, path, res.StatusCode, res.Header.Get("Retry-After"), d)
			}
		}
		srv.Close()
	}
}

var goTypeName = regexp.MustCompile(`httpapi\.|orders\.|\bint(64)?\b|\bstruct\b|Go |\ba int\b`)

func TestJSONErrorsNameFields(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	e.seed()
	for _, c := range []struct{ path, body, want string }{
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":[{"product_id":"tea","quantity":"1"}]}`, "lines[0].quantity must be a whole number, not a JSON string"},
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":[{"product_id":"tea","quantity":1},{"product_id":"cup","quantity":true}]}`, "lines[1].quantity must be a whole number"},
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":[{"product_id":"tea","quantity":1.5}]}`, "lines[0].quantity must be a whole number"},
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":[{"product_id":"tea","quantity":99999999999999999999}]}`, "lines[0].quantity must be a whole number in range"},
		{"/orders", `{"customer_id":"c","customer_name":7,"lines":[]}`, "customer_name must be a string"},
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":{"product_id":"tea"}}`, "lines must be a list, not a JSON object"},
		{"/orders", `{"customer_id":"c","customer_name":"C","lines":[7]}`, "lines[0] must be an object"},
		{"/orders", `[1,2]`, "the body must be an object, not a JSON array"},
		{"/orders", `"order"`, "the body must be an object, not a JSON string"},
		{"/orders", `{"customer_id":"c","lines":[{"product_id":"tea","quantity":1,"colour":"red"}]}`, `unknown field "colour"`},
		{"/orders", `{"customer_id":"c",`, "the body ends in the middle of a value"},
		{"/orders", `{"customer_id":c}`, "invalid character"},
		{"/orders/o1/items", `{"product_id":"tea","quantity":"2"}`, "quantity must be a whole number, not a JSON string"},
		{"/orders/o1/pay", `{"amount_cents":"450"}`, "amount_cents must be a whole number"},
		{"/products", `{"name":"X","price_cents":[1]}`, "price_cents must be a whole number, not a JSON array"},
	} {
		r := e.do("POST", c.path, c.body)
		var b httpapi.ErrorBody
		r.decode(t, &b)
		if r.status != http.StatusBadRequest || b.Error.Code != "invalid_json" || !strings.Contains(b.Error.Message, c.want) ||
			goTypeName.MatchString(b.Error.Message) {
			t.Errorf("POST %s %s: %d %s, want 400 invalid_json saying %q without Go type names", c.path, c.body, r.status, r.body, c.want)
		}
	}
}

func TestConsistencyTokenSources(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	tok := e.seed()
	other := e.command("POST", "/orders/o1/confirm", "")
	for _, c := range []struct {
		name, path, header string
		status             int
	}{
		{"header and query disagree", "/orders/o1?after=" + other, tok, http.StatusBadRequest},
		{"header and query disagree on orders_by_product", "/products/tea/orders?after=" + other, tok, http.StatusBadRequest},
		{"header and query disagree on search", "/orders/search?after=" + other, tok, http.StatusBadRequest},
		{"header and query agree", "/orders/o1?after=" + tok, tok, http.StatusOK},
		{"header alone", "/orders/o1", tok, http.StatusOK},
		{"query alone", "/orders/o1?after=" + tok, "", http.StatusOK},
	} {
		if strings.Contains(c.path, "search") && !e.search {
			continue // search is off: it answers 503 whatever the token
		}
		r := e.do("GET", c.path, "", "X-Consistency-Token", c.header)
		if r.status != c.status || (c.status == http.StatusBadRequest && r.errorCode(t) != "invalid_consistency_token") {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
	}
}

func TestNotFoundStaleness(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	tok := e.seed()
	var v readmodel.OrderView
	e.read("/orders/o1", tok, &v)
	// The last event of the log is one order_view does not handle.
	repriced := e.command("POST", "/products/tea/reprice", `{"price_cents":500}`)
	for _, c := range []struct {
		name, token, stale string
	}{
		{"no token", "", "false"},
		{"a reached token", tok, "false"},
		{"the token of an event the projection does not handle", repriced, "false"},
		{"a token from the future", "999999999:999999999", "true"},
	} {
		r := e.do("GET", "/orders/nope", "", "X-Consistency-Token", c.token)
		if r.status != http.StatusNotFound || r.header.Get("X-Stale") != c.stale {
			t.Errorf("GET /orders/nope with %s: %d, X-Stale %q; want 404, X-Stale %q", c.name, r.status, r.header.Get("X-Stale"), c.stale)
		}
	}
}

func TestNamesRefuseControlCharacters(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	e.seed()
	before := e.stored()
	for _, name := range []string{`"a\u0001b"`, `"line\nbreak"`, `"tab\there"`, `"nul\u0000"`, `"del\u007f"`, `"c1\u0085"`,
		`"lone \ud800 surrogate"`, `"replacement \ufffd"`, "\"bad \xff byte\""} {
		for _, c := range []struct{ path, body string }{
			{"/products/tea/rename", `{"name":` + name + `}`},
			{"/products", `{"name":` + name + `,"price_cents":100}`},
			{"/orders", `{"customer_id":"c9","customer_name":` + name + `,"lines":[{"product_id":"tea","quantity":1}]}`},
		} {
			r := e.do("POST", c.path, c.body)
			if r.status != http.StatusBadRequest {
				t.Errorf("POST %s %q: %d %s, want 400", c.path, c.body, r.status, r.body)
			}
		}
	}
	e.unchanged(before, "a name with control characters")
}
