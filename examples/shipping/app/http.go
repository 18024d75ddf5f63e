package app

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/stratadev/strata/examples/shipping"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink/consume"
)

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shipments/{order_id}", a.getShipment)
	mux.HandleFunc("GET /healthz", a.health)
	return mux
}

// getShipment answers what the service knows of an order: its copy of the
// order and the shipment's status.
func (a *App) getShipment(w http.ResponseWriter, r *http.Request) {
	v, err := shipping.View(r.Context(), a.Pool, a.Schema, r.PathValue("order_id"))
	switch {
	case errors.Is(err, shipping.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "the shipping service has heard of no order " + r.PathValue("order_id")})
	case err != nil:
		a.log.ErrorContext(r.Context(), "shipping: read a shipment", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "the shipping database did not answer; try again"})
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// health reports the consumers' and the projection's states: 200 when all
// run, 503 naming the ones that do not.
func (a *App) health(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	out := map[string]string{}
	var bad []string
	for _, group := range []string{a.cfg.CopyGroup, a.cfg.CommandsGroup} {
		st, err := consume.Status(ctx, a.Pool, a.Schema, group)
		state := "unknown"
		if err == nil {
			state = string(st.State)
		}
		out["consumer "+group] = state
		if err != nil || st.State != consume.StateRunning {
			bad = append(bad, group)
		}
	}
	cp, err := a.Sink.Checkpoint(ctx, shipping.ShipmentsName)
	state := "unknown"
	if err == nil {
		state = string(cp.State)
	}
	out["projection "+shipping.ShipmentsName] = state
	if err != nil || cp.State != projections.StateRunning {
		bad = append(bad, shipping.ShipmentsName)
	}
	code := http.StatusOK
	out["status"] = "ok"
	if len(bad) > 0 {
		code, out["status"] = http.StatusServiceUnavailable, "degraded: "+strings.Join(bad, ", ")
	}
	writeJSON(w, code, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}
