package shipping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/examples/orders/contract"
)

// ErrUnknownType means a message's type is not one of the contract's types
// this service knows. A consumer's error policy decides what becomes of it
// (the service stops at it, or parks it in a dead-letter topic): a newer
// contract version calls for a new release of the service.
var ErrUnknownType = errors.New("shipping: unknown integration event type")

// ErrBadEvent means an integration event's data does not decode into its
// type. Like an unknown type, it is the message's fault, not the service's.
var ErrBadEvent = errors.New("shipping: undecodable integration event")

// ToCommand maps an integration event of the order service to the shipping
// command it calls for: order.confirmed requests a shipment, and
// order.cancelled cancels it. id is the command's ID, derived from the
// message. ok is false for the contract's other types, which call for no
// command.
func ToCommand(typ string, value []byte, id string) (cmd any, ok bool, err error) {
	switch typ {
	case contract.TypeOrderConfirmed:
		var e contract.OrderConfirmed
		if err := decode(typ, value, &e); err != nil {
			return nil, false, err
		}
		return RequestShipment{ID: id, OrderID: e.OrderID}, true, nil
	case contract.TypeOrderCancelled:
		var e contract.OrderCancelled
		if err := decode(typ, value, &e); err != nil {
			return nil, false, err
		}
		return CancelShipment{ID: id, OrderID: e.OrderID, Reason: e.Reason}, true, nil
	case contract.TypeOrderPlaced, contract.TypeOrderItemAdded, contract.TypeOrderItemRemoved, contract.TypeOrderShipped:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("%w: %q", ErrUnknownType, typ)
}

// OrderCopyTable is the shipping service's copy of the orders it has heard
// of, in its own schema.
const OrderCopyTable = "shipping_orders"

// OrderCopyDDL creates the table of the copy, in schema.
func OrderCopyDDL(schema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + pgx.Identifier{schema, OrderCopyTable}.Sanitize() + ` (
		order_id      text        PRIMARY KEY,
		customer_name text        NOT NULL,
		status        text        NOT NULL,
		lines         jsonb       NOT NULL,
		total_cents   bigint      NOT NULL,
		updated_at    timestamptz NOT NULL
	)`
}

// OrderCopy is a row of the copy.
type OrderCopy struct {
	OrderID      string          `json:"order_id"`
	CustomerName string          `json:"customer_name"`
	Status       string          `json:"status"` // placed, confirmed, cancelled, shipped
	Lines        []contract.Line `json:"lines"`
	TotalCents   int64           `json:"total_cents"`
	UpdatedAt    time.Time       `json:"updated_at"`
}

// ApplyToCopy applies one integration event to the copy in schema, in tx.
// at is when the event happened (the message's ce_time). Messages of one
// order arrive in order (they share a key, so a partition); a change to
// an order the copy does not have (its order.placed was published before
// this service subscribed) is ignored.
func ApplyToCopy(ctx context.Context, tx pgx.Tx, schema, typ string, value []byte, at time.Time) error {
	table := pgx.Identifier{schema, OrderCopyTable}.Sanitize()
	switch typ {
	case contract.TypeOrderPlaced:
		var e contract.OrderPlaced
		if err := decode(typ, value, &e); err != nil {
			return err
		}
		lines, err := json.Marshal(e.Lines)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+table+` (order_id, customer_name, status, lines, total_cents, updated_at)
			VALUES ($1, $2, 'placed', $3, $4, $5) ON CONFLICT (order_id) DO NOTHING`,
			e.OrderID, e.CustomerName, lines, e.TotalCents, at)
		return err
	case contract.TypeOrderItemAdded:
		var e contract.OrderItemAdded
		if err := decode(typ, value, &e); err != nil {
			return err
		}
		return changeLines(ctx, tx, table, e.OrderID, at, func(ls []contract.Line) []contract.Line {
			if i := slices.IndexFunc(ls, func(l contract.Line) bool { return l.ProductID == e.Line.ProductID }); i >= 0 {
				ls[i].Quantity += e.Line.Quantity
				return ls
			}
			return append(ls, e.Line)
		})
	case contract.TypeOrderItemRemoved:
		var e contract.OrderItemRemoved
		if err := decode(typ, value, &e); err != nil {
			return err
		}
		return changeLines(ctx, tx, table, e.OrderID, at, func(ls []contract.Line) []contract.Line {
			return slices.DeleteFunc(ls, func(l contract.Line) bool { return l.ProductID == e.ProductID })
		})
	case contract.TypeOrderConfirmed, contract.TypeOrderCancelled, contract.TypeOrderShipped:
		var e struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(value, &e); err != nil || e.OrderID == "" {
			return fmt.Errorf("%w: %s: want an object with an order_id (%v)", ErrBadEvent, typ, err)
		}
		status := map[string]string{contract.TypeOrderConfirmed: "confirmed", contract.TypeOrderCancelled: "cancelled", contract.TypeOrderShipped: "shipped"}[typ]
		_, err := tx.Exec(ctx, `UPDATE `+table+` SET status = $2, updated_at = $3 WHERE order_id = $1`, e.OrderID, status, at)
		return err
	}
	return fmt.Errorf("%w: %q", ErrUnknownType, typ)
}

func changeLines(ctx context.Context, tx pgx.Tx, table, orderID string, at time.Time, change func([]contract.Line) []contract.Line) error {
	var raw []byte
	err := tx.QueryRow(ctx, `SELECT lines FROM `+table+` WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	var ls []contract.Line
	if err := json.Unmarshal(raw, &ls); err != nil {
		return err
	}
	ls = change(ls)
	var total int64
	for _, l := range ls {
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	out, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE `+table+` SET lines = $2, total_cents = $3, updated_at = $4 WHERE order_id = $1`, orderID, out, total, at)
	return err
}

// decode unmarshals an integration event. Fields it does not know are
// ignored: adding an optional field is not a new version of the contract.
func decode(typ string, value []byte, v any) error {
	if err := json.Unmarshal(value, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadEvent, typ, err)
	}
	return nil
}
