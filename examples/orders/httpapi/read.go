package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

// answer writes a read's result with the X-Stale header.
func answer(w http.ResponseWriter, stale bool, v any) {
	if stale {
		w.Header().Set("X-Stale", "true")
	} else {
		w.Header().Set("X-Stale", "false")
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) getOrder(w http.ResponseWriter, r *http.Request) {
	stale, err := s.consistency(r, readmodel.OrderViewName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.Reader.Order(r.Context(), r.PathValue("id"))
	if err != nil {
		if stale {
			w.Header().Set("X-Stale", "true")
		}
		s.writeError(w, r, err)
		return
	}
	answer(w, stale, v)
}

func (s *server) getProductOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pq := readmodel.ProductOrdersQuery{ProductID: r.PathValue("id"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	var err error
	if err = checkStatus(pq.Status); err == nil {
		if pq.From, err = timeParam(q.Get("from"), "from"); err == nil {
			if pq.To, err = timeParam(q.Get("to"), "to"); err == nil {
				pq.Limit, err = intParam(q.Get("limit"), "limit", 1, 100)
			}
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stale, err := s.consistency(r, readmodel.OrdersByProductName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.Reader.ProductOrders(r.Context(), pq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	answer(w, stale, page)
}

func (s *server) searchOrders(w http.ResponseWriter, r *http.Request) {
	if s.Search == nil {
		s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "search_off", msg: s.SearchOffMessage})
		return
	}
	q := r.URL.Query()
	sq := readmodel.SearchQuery{Text: q.Get("q"), Status: q.Get("status"), Sort: q.Get("sort")}
	var err error
	if err = checkStatus(sq.Status); err == nil {
		if sq.From, err = timeParam(q.Get("from"), "from"); err == nil {
			if sq.To, err = timeParam(q.Get("to"), "to"); err == nil {
				if sq.MinTotalCents, err = int64Param(q.Get("min_total"), "min_total"); err == nil {
					if sq.MaxTotalCents, err = int64Param(q.Get("max_total"), "max_total"); err == nil {
						if sq.Limit, err = intParam(q.Get("limit"), "limit", 1, 100); err == nil {
							sq.Offset, err = intParam(q.Get("offset"), "offset", 0, 10_000)
						}
					}
				}
			}
		}
	}
	if err == nil && !slices.Contains(readmodel.SearchSorts, sq.Sort) {
		err = badRequest("invalid_parameter", "sort must be one of "+quoteList(readmodel.SearchSorts))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stale, err := s.consistency(r, readmodel.OrderSearchName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if token(r) != "" && !stale {
		if err := s.Search.Refresh(r.Context()); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	res, err := s.Search.Search(r.Context(), sq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	answer(w, stale, res)
}

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
