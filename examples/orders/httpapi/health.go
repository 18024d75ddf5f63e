package httpapi

import (
	"net/http"

	"github.com/stratadev/strata/projections"
)

// WithHealth returns h with GET /healthz added, which reports the health of
// the projection workers as plain text: "ok" when every worker runs, and
// otherwise "degraded: " followed by each stalled or failing projection,
// such as `degraded: order_search stalled at 726:8: event order-7@1 (type
// "OrderPlaced"): ...`.
//
// A degraded answer is a 200 too, on purpose: the process still serves
// writes, and reads from every read model (a stalled one answers with
// X-Stale: true), so a load balancer must keep routing to it, and
// restarting it would not fix a stall. Monitoring alerts on a body that is
// not "ok"; the X-Health header carries "ok" or "degraded" for checks that
// only look at headers.
func WithHealth(h http.Handler, health func() projections.Health) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		hs := health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if hs.OK() {
			w.Header().Set("X-Health", "ok")
		} else {
			w.Header().Set("X-Health", "degraded")
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(hs.String() + "\n"))
	})
	mux.Handle("/", h)
	return mux
}
