package httpapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/examples/orders/readmodel"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/consistency"
)

// ReadWaitDefault is how long a read with a consistency token waits for the
// read model by default.
const ReadWaitDefault = consistency.WaitDefault

// SearchTimeoutDefault bounds a search by default.
const SearchTimeoutDefault = 5 * time.Second

// Config is what the API serves from. Bus, Store, Reader and Checkpoints
// are required.
type Config struct {
	Bus *cqrs.Bus
	// Store is the event store: its head tells a read model that is being
	// built for the first time from one that is up to date.
	Store es.Store
	// Reader reads the PostgreSQL read models.
	Reader *readmodel.Reader
	// Checkpoints are the projections' checkpoints, for consistency tokens
	// and readiness.
	Checkpoints projections.Checkpoints
	// Search serves GET /orders/search. Nil turns search off: the endpoint
	// answers 503 with SearchOffMessage.
	Search Searcher
	// SearchOffMessage says why search is off and how to turn it on.
	// Defaults to a generic message.
	SearchOffMessage string
	// ReadWait bounds how long a read with a consistency token waits.
	// Defaults to ReadWaitDefault (2s).
	ReadWait time.Duration
	// SearchTimeout bounds a search, including the refresh of a search
	// with a consistency token; a search that takes longer answers 503
	// with Retry-After. Defaults to SearchTimeoutDefault (5s).
	SearchTimeout time.Duration
	// Checkouts reads where an order's checkout is, for GET /orders/{id}.
	// Nil leaves the checkout out of the order view.
	Checkouts Checkouts
	// Keys remembers the request each Idempotency-Key was first used for,
	// so that the key used again with another request is refused. Nil
	// turns that check off: a retry is still harmless, but the key used
	// again for other content is answered with the first result.
	Keys Keys
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Searcher runs order searches. [*readmodel.Search] is one.
type Searcher interface {
	Search(ctx context.Context, q readmodel.SearchQuery) (*readmodel.SearchResult, error)
	// Refresh makes every document written so far searchable; a search
	// that waited for a consistency token calls it first.
	Refresh(ctx context.Context) error
}

// Checkouts reads the checkout of an order. The app's reads the checkout
// process's row (see checkout.Read).
type Checkouts interface {
	// Checkout returns the order's checkout, or ok=false if it has none.
	Checkout(ctx context.Context, orderID string) (v checkout.View, ok bool, err error)
}

type server struct {
	Config
	log    *slog.Logger
	ready  map[string]*atomic.Bool
	waiter *consistency.Waiter
}

// New returns the API's handler.
func New(cfg Config) http.Handler {
	if cfg.Bus == nil || cfg.Store == nil || cfg.Reader == nil || cfg.Checkpoints == nil {
		panic("httpapi: New: Bus, Store, Reader and Checkpoints are required")
	}
	cfg.ReadWait = cmp.Or(cfg.ReadWait, ReadWaitDefault)
	cfg.SearchTimeout = cmp.Or(cfg.SearchTimeout, SearchTimeoutDefault)
	cfg.SearchOffMessage = cmp.Or(cfg.SearchOffMessage, "search is off: this server runs without Elasticsearch")
	s := &server{Config: cfg, log: cmp.Or(cfg.Logger, slog.Default()), ready: map[string]*atomic.Bool{},
		waiter: consistency.New(cfg.Checkpoints, consistency.Config{Wait: cfg.ReadWait})}
	for _, name := range []string{readmodel.OrderViewName, readmodel.OrdersByProductName, readmodel.OrderSearchName} {
		s.ready[name] = new(atomic.Bool)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /products", s.createProduct)
	mux.HandleFunc("POST /products/{id}/rename", s.renameProduct)
	mux.HandleFunc("POST /products/{id}/reprice", s.repriceProduct)
	mux.HandleFunc("POST /products/{id}/discontinue", s.discontinueProduct)
	mux.HandleFunc("PUT /products/{id}/stock", s.setStock)
	mux.HandleFunc("POST /orders", s.placeOrder)
	mux.HandleFunc("POST /orders/{id}/items", s.addItem)
	mux.HandleFunc("DELETE /orders/{id}/items/{product}", s.removeItem)
	mux.HandleFunc("POST /orders/{id}/checkout", s.checkoutOrder)
	mux.HandleFunc("POST /orders/{id}/confirm", s.confirmOrder)
	mux.HandleFunc("POST /orders/{id}/pay", s.payOrder)
	mux.HandleFunc("POST /orders/{id}/ship", s.shipOrder)
	mux.HandleFunc("POST /orders/{id}/cancel", s.cancelOrder)

	mux.HandleFunc("GET /orders/{id}", s.getOrder)
	mux.HandleFunc("GET /products/{id}/orders", s.getProductOrders)
	mux.HandleFunc("GET /orders/search", s.searchOrders)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return checkPath(mux, s)
}

// errRebuilding is the 503 of a read model being built for the first time.
func errRebuilding(name string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "read_model_building",
		msg: "the read model " + name + " is being built for the first time; try again shortly"}
}

// isReady reports whether the projection has a read model to serve: it has
// applied events, or the log has none. Once the projection has applied
// events it stays ready. An empty log is not remembered: Head only shows
// what readers may see, so an open transaction elsewhere can make a log
// look empty for a moment.
func (s *server) isReady(ctx context.Context, name string) (bool, error) {
	flag := s.ready[name]
	if flag.Load() {
		return true, nil
	}
	cp, err := s.Checkpoints.Checkpoint(ctx, name)
	if err != nil {
		return false, err
	}
	if cp.Position.IsZero() {
		head, err := s.Store.Head(ctx)
		if err != nil {
			return false, err
		}
		return head.IsZero(), nil
	}
	flag.Store(true)
	return true, nil
}

// waitRead waits, up to ReadWait, for projection (and the also ones) to
// reach the request's consistency token and sets X-Stale (see [consistency.Waiter.Wait]). It
// refuses a malformed token with 400, and with 503 a read model that is
// being built for the first time.
func (s *server) waitRead(w http.ResponseWriter, r *http.Request, projection string, also ...string) (consistency.Result, error) {
	res, err := s.waiter.Wait(w, r, append([]string{projection}, also...)...)
	if te := (*consistency.TokenError)(nil); errors.As(err, &te) {
		return res, badRequest("invalid_consistency_token", te.Reason)
	}
	if err != nil {
		return res, err
	}
	if !res.Position.IsZero() && !res.Stale {
		return res, nil
	}
	if ready, err := s.isReady(r.Context(), projection); err != nil || !ready {
		w.Header().Del(consistency.StaleHeader)
		if err != nil {
			return res, err
		}
		return res, errRebuilding(projection)
	}
	return res, nil
}
