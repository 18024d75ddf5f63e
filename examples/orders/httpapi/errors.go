package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/examples/orders/readmodel"
)

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong.
type ErrorDetail struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// FieldError is one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// apiError is an error with its HTTP status and code.
type apiError struct {
	status int
	code   string
	msg    string
	fields []cqrs.FieldError
	// retryAfter, in seconds, is sent as Retry-After when positive.
	retryAfter int
}

func (e *apiError) Error() string { return e.msg }

func badRequest(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: msg}
}

// codes names the domain's sentinels.
var codes = []struct {
	err    error
	code   string
	status int
}{
	{orders.ErrUnknownProduct, "unknown_product", http.StatusBadRequest},
	{orders.ErrProductDiscontinued, "product_discontinued", http.StatusBadRequest},
	{orders.ErrItemNotInOrder, "item_not_in_order", http.StatusBadRequest},
	{orders.ErrAmountMismatch, "amount_mismatch", http.StatusBadRequest},
	{orders.ErrTooManyItems, "too_many_items", http.StatusBadRequest},
	{orders.ErrQuantityTooLarge, "quantity_too_large", http.StatusBadRequest},
	{orders.ErrOrderCancelled, "order_cancelled", http.StatusConflict},
	{orders.ErrOrderShipped, "order_shipped", http.StatusConflict},
	{orders.ErrOrderNotOpen, "order_not_open", http.StatusConflict},
	{orders.ErrNotConfirmed, "order_not_confirmed", http.StatusConflict},
	{orders.ErrNotPaid, "order_not_paid", http.StatusConflict},
	{orders.ErrAlreadyPaid, "order_already_paid", http.StatusConflict},
	{orders.ErrLastItem, "last_item", http.StatusConflict},
	{orders.ErrCheckingOut, "order_checking_out", http.StatusConflict},
	{orders.ErrNoCheckout, "no_checkout", http.StatusConflict},
	{orders.ErrOutOfStock, "out_of_stock", http.StatusConflict},
	{orders.ErrPaymentSettled, "payment_settled", http.StatusConflict},
}

// toAPIError maps an error of the bus or a reader to a response.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if isKeyReused(err) {
		return errKeyReused
	}
	var ve *cqrs.ValidationError
	if errors.As(err, &ve) {
		msg := "invalid request"
		if ve.Err != nil {
			msg = "invalid request: " + joinLines(ve.Err.Error())
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: msg, fields: ve.Fields}
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return &apiError{status: c.status, code: c.code, msg: domainMessage(err, c.err)}
		}
	}
	var nf *cqrs.AggregateNotFoundError
	switch {
	case errors.As(err, &nf):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: nf.Stream + " does not exist"}
	case errors.Is(err, readmodel.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "not found"}
	case errors.Is(err, cqrs.ErrAggregateExists):
		return &apiError{status: http.StatusConflict, code: "already_exists", msg: "it exists already; choose another id"}
	case errors.Is(err, es.ErrWrongExpectedVersion):
		return &apiError{status: http.StatusConflict, code: "concurrent_change", msg: "changed concurrently; try again"}
	case errors.Is(err, readmodel.ErrBadCursor):
		return badRequest("invalid_cursor", "the cursor is not one this API returned")
	}
	return &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
}

// domainMessage returns the decider's own words, with the detail it added
// (the product's ID, the amounts), without the bus's prefix; or the
// sentinel's message when err did not come from a decider.
func domainMessage(err, sentinel error) string {
	var re *cqrs.RejectedError
	if errors.As(err, &re) {
		return re.Err.Error()
	}
	return sentinel.Error()
}

func joinLines(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= 500 && ae.code == "internal" && r.Context().Err() == nil {
		s.log.ErrorContext(r.Context(), "orders api: request failed", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	body := ErrorBody{Error: ErrorDetail{Code: ae.code, Message: ae.msg}}
	for _, f := range ae.fields {
		body.Error.Fields = append(body.Error.Fields, FieldError{Field: f.Field, Message: f.Message})
	}
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // a client that went away cannot be told
}
