package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/checkout"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

func (s *server) getOrder(w http.ResponseWriter, r *http.Request) {
	// X-Stale is set on a 404 too: true only when the read model had not
	// reached the request's token.
	// With a token, the checkout is read once its process has seen the
	// write too.
	var also []string
	if s.Checkouts != nil {
		also = append(also, checkout.Projection)
	}
	if _, err := s.waitRead(w, r, readmodel.OrderViewName, also...); err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.Reader.Order(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.Checkouts == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	c, ok, err := s.Checkouts.Checkout(r.Context(), v.OrderID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := OrderWithCheckout{OrderView: v}
	if ok {
		out.Checkout = &c
	}
	writeJSON(w, http.StatusOK, out)
}

// OrderWithCheckout is the answer of GET /orders/{id}: the order view and,
// once the order's checkout started, where it is.
type OrderWithCheckout struct {
	*readmodel.OrderView
	Checkout *checkout.View `json:"checkout,omitempty"`
}

func (s *server) getProductOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pq := readmodel.ProductOrdersQuery{ProductID: r.PathValue("id"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	var err error
	if err = checkStatus(pq.Status); err == nil {
		if pq.From, err = timeParam(q.Get("from"), "from"); err == nil {
			if pq.To, err = timeParam(q.Get("to"), "to"); err == nil {
				if pq.Limit, err = intParam(q.Get("limit"), "limit", 1, 100); err == nil {
					err = pq.Validate() // a bad cursor is a 400 even while the read model is built
				}
			}
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.waitRead(w, r, readmodel.OrdersByProductName); err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.Reader.ProductOrders(r.Context(), pq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *server) searchOrders(w http.ResponseWriter, r *http.Request) {
	if s.Search == nil {
		s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "search_off", msg: s.SearchOffMessage})
		return
	}
	q := r.URL.Query()
	sq := readmodel.SearchQuery{Text: q.Get("q"), Status: q.Get("status"), Sort: q.Get("sort")}
	var err error
	if utf8.RuneCountInString(sq.Text) > MaxSearchLength || !utf8.ValidString(sq.Text) {
		err = badRequest("invalid_parameter", fmt.Sprintf("q must be at most %d characters of UTF-8", MaxSearchLength))
	} else if err = checkStatus(sq.Status); err == nil {
		if sq.From, err = timeParam(q.Get("from"), "from"); err == nil {
			if sq.To, err = timeParam(q.Get("to"), "to"); err == nil {
				if sq.MinTotalCents, err = int64Param(q.Get("min_total"), "min_total"); err == nil {
					if sq.MaxTotalCents, err = int64Param(q.Get("max_total"), "max_total"); err == nil {
						if sq.Limit, err = intParam(q.Get("limit"), "limit", 1, 100); err == nil {
							sq.Offset, err = intParam(q.Get("offset"), "offset", 0, maxSearchWindow)
						}
					}
				}
			}
		}
	}
	if err == nil && sq.Offset+cmp.Or(sq.Limit, 20) > maxSearchWindow {
		err = badRequest("invalid_parameter", fmt.Sprintf("offset + limit must be at most %d: search pages no deeper; narrow the search instead", maxSearchWindow))
	}
	if err == nil && !slices.Contains(readmodel.SearchSorts, sq.Sort) {
		err = badRequest("invalid_parameter", "sort must be one of "+quoteList(readmodel.SearchSorts))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wr, err := s.waitRead(w, r, readmodel.OrderSearchName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.SearchTimeout)
	defer cancel()
	if !wr.Position.IsZero() && !wr.Stale {
		if err := s.Search.Refresh(ctx); err != nil {
			s.writeError(w, r, s.searchFailed(r, err))
			return
		}
	}
	res, err := s.Search.Search(ctx, sq)
	if err != nil {
		s.writeError(w, r, s.searchFailed(r, err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Limits of search requests.
const (
	// MaxSearchLength bounds the characters of q.
	MaxSearchLength = 200
	// maxSearchWindow is Elasticsearch's default index.max_result_window:
	// offset + limit may not pass it.
	maxSearchWindow = 10_000
)

// searchFailed turns an error of Elasticsearch (an outage, a timeout, an
// error status) into a 503 with Retry-After, logged at WARN: the rest of
// the API keeps serving, and the client may try again.
func (s *server) searchFailed(r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return err
	}
	s.log.WarnContext(r.Context(), "orders api: search failed", slog.Any("error", err))
	return &apiError{status: http.StatusServiceUnavailable, code: "search_unavailable", retryAfter: searchRetryAfter,
		msg: "search is unavailable right now (Elasticsearch did not answer in time or failed); try again shortly"}
}

// searchRetryAfter is the Retry-After, in seconds, of a failed search.
const searchRetryAfter = 5

func quoteList(l []string) string {
	out := ""
	for i, v := range l {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(v)
	}
	return out
}

func checkStatus(v string) error {
	if v == "" || slices.Contains(orders.Statuses, orders.Status(v)) {
		return nil
	}
	return badRequest("invalid_parameter", "status must be one of placed, confirmed, paid, shipped, cancelled")
}

func timeParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest("invalid_parameter", name+" must be a date (2006-01-02) or an RFC 3339 time")
}

func intParam(v, name string, lo, hi int) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("invalid_parameter", name+" must be a whole number from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
	}
	return n, nil
}

func int64Param(v, name string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("invalid_parameter", name+" must be a whole number of cents, 0 or more")
	}
	return n, nil
}
