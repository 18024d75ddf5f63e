package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections/consistency"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// Accepted is the answer to a command.
type Accepted struct {
	// ID is the product's or order's ID.
	ID      string `json:"id"`
	Stream  string `json:"stream"`
	Version int64  `json:"version"`
	// ConsistencyToken is the position the command wrote, or the zero
	// position when it changed nothing. Pass it to a read to see this
	// write.
	ConsistencyToken string `json:"consistency_token"`
}

// decode reads a JSON object into v, refusing bodies that are not
// declared as JSON (a form or text/plain post from a page on another site),
// bodies over maxBody, invalid UTF-8, unknown fields and trailing data. An
// empty body decodes as {} when emptyOK.
func decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: "body_too_large", msg: fmt.Sprintf("the body is over %d bytes", maxBody)}
		}
		return badRequest("invalid_json", "could not read the body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("invalid_json", "the body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return badRequest("invalid_json", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid_json", "invalid JSON: "+jsonMessage(body, err))
	}
	if dec.More() {
		return badRequest("invalid_json", "invalid JSON: more than one value in the body")
	}
	return nil
}

// checkContentType refuses a write whose Content-Type is not
// application/json, with or without parameters such as charset=utf-8.
func checkContentType(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg: "writes take a JSON body with the header Content-Type: application/json"}
	}
	return nil
}

// dispatch sends cmd and answers 202 or the error.
func (s *server) dispatch(w http.ResponseWriter, r *http.Request, id string, cmd any) {
	ctx := cqrs.WithCorrelationID(r.Context(), r.Header.Get("X-Request-ID"))
	if r.Header.Get("X-Request-ID") == "" {
		ctx = r.Context()
	}
	if err := checkKey(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	saved, err := s.claim(r, cmd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if saved != nil {
		// A retry: the first answer, whose token a read can wait for.
		w.Header().Set(consistency.Header, saved.ConsistencyToken)
		writeJSON(w, http.StatusAccepted, saved)
		return
	}
	res, err := s.Bus.Dispatch(ctx, cmd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := Accepted{ID: id, Stream: res.Stream, Version: res.Version, ConsistencyToken: consistency.SetToken(w.Header(), res.Position)}
	if k := r.Header.Get("Idempotency-Key"); k != "" && s.Keys != nil {
		// Unsaved (a crash, an error), a retry is dispatched again and
		// the command side recognizes it by its ID.
		if err := s.Keys.Save(context.WithoutCancel(ctx), k, a); err != nil {
			s.log.WarnContext(ctx, "orders api: save the answer of an idempotency key", slog.Any("error", err))
		}
	}
	writeJSON(w, http.StatusAccepted, a)
}

func key(r *http.Request) orders.Key {
	return orders.Key{IdempotencyKey: r.Header.Get("Idempotency-Key")}
}

func (s *server) createProduct(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ProductID  string `json:"product_id"`
		Name       string `json:"name"`
		PriceCents int64  `json:"price_cents"`
	}
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.ProductID == "" {
		body.ProductID = newID(r, "product")
	}
	s.dispatch(w, r, body.ProductID, orders.CreateProduct{Key: key(r), ProductID: body.ProductID, Name: body.Name, PriceCents: body.PriceCents})
}

func (s *server) renameProduct(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.RenameProduct{Key: key(r), ProductID: id, Name: body.Name})
}

func (s *server) repriceProduct(w http.ResponseWriter, r *http.Request) {
	var body struct {
		PriceCents int64 `json:"price_cents"`
	}
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.RepriceProduct{Key: key(r), ProductID: id, PriceCents: body.PriceCents})
}

func (s *server) discontinueProduct(w http.ResponseWriter, r *http.Request) {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.DiscontinueProduct{Key: key(r), ProductID: id})
}

// LineBody is a line of a place-order request.
type LineBody struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// PlaceOrderBody is the body of POST /orders.
type PlaceOrderBody struct {
	OrderID      string     `json:"order_id,omitempty"`
	CustomerID   string     `json:"customer_id"`
	CustomerName string     `json:"customer_name"`
	Lines        []LineBody `json:"lines"`
}

func (s *server) placeOrder(w http.ResponseWriter, r *http.Request) {
	var body PlaceOrderBody
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.OrderID == "" {
		body.OrderID = newID(r, "order")
	}
	cmd := orders.PlaceOrder{Key: key(r), OrderID: body.OrderID, CustomerID: body.CustomerID, CustomerName: body.CustomerName}
	for _, l := range body.Lines {
		cmd.Lines = append(cmd.Lines, orders.LineRequest{ProductID: l.ProductID, Quantity: l.Quantity})
	}
	s.dispatch(w, r, body.OrderID, cmd)
}

func (s *server) addItem(w http.ResponseWriter, r *http.Request) {
	var body LineBody
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.AddItem{Key: key(r), OrderID: id, ProductID: body.ProductID, Quantity: body.Quantity})
}

func (s *server) removeItem(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.RemoveItem{Key: key(r), OrderID: id, ProductID: r.PathValue("product")})
}

func (s *server) confirmOrder(w http.ResponseWriter, r *http.Request) {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.ConfirmOrder{Key: key(r), OrderID: id})
}

func (s *server) payOrder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AmountCents int64 `json:"amount_cents"`
	}
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.PayOrder{Key: key(r), OrderID: id, AmountCents: body.AmountCents})
}

func (s *server) shipOrder(w http.ResponseWriter, r *http.Request) {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.ShipOrder{Key: key(r), OrderID: id})
}

func (s *server) cancelOrder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decode(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.CancelOrder{Key: key(r), OrderID: id, Reason: body.Reason})
}

func (s *server) setStock(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Level *int `json:"level"`
	}
	if err := decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Level == nil {
		s.writeError(w, r, &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "invalid request: level: is required",
			fields: []cqrs.FieldError{{Field: "level", Message: "is required"}}})
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.SetStock{Key: key(r), ProductID: id, Level: *body.Level})
}

// CheckoutBody is the body of POST /orders/{id}/checkout.
type CheckoutBody struct {
	// Card tells the simulated payment gateway how to answer: "ok" (the
	// default), "decline" or "slow" (after the checkout's deadline).
	Card string `json:"card,omitempty"`
}

func (s *server) checkoutOrder(w http.ResponseWriter, r *http.Request) {
	var body CheckoutBody
	if err := decode(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	s.dispatch(w, r, id, orders.CheckoutOrder{Key: key(r), OrderID: id, Card: body.Card})
}
