package shipping

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// ShipmentsName is the projection of the shipping service's own log that
// its read API serves: one row per shipment.
const ShipmentsName = "shipments"

// Shipments is the shipments projection (pgsink).
type Shipments struct{}

func (Shipments) Name() string      { return ShipmentsName }
func (Shipments) Handles() []string { return []string{TypeShipmentRequested, TypeShipmentCancelled} }
func (Shipments) Tables() []string  { return []string{ShipmentsName} }

// Setup creates the table.
func (Shipments) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table(ShipmentsName).Sanitize()+` (
		order_id   text        PRIMARY KEY,
		status     text        NOT NULL,
		reason     text        NOT NULL DEFAULT '',
		updated_at timestamptz NOT NULL
	)`)
	return err
}

// HandleBatch records each shipment's latest status.
func (Shipments) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	table := tx.Table(ShipmentsName).Sanitize()
	for _, ev := range events {
		var (
			id, reason string
			status     Status
		)
		switch e := ev.Data.(type) {
		case ShipmentRequested:
			id, status = e.OrderID, StatusRequested
		case ShipmentCancelled:
			id, status, reason = e.OrderID, StatusCancelled, e.Reason
		default:
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` AS s (order_id, status, reason, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at`,
			id, string(status), reason, ev.Record.RecordedAt); err != nil {
			return err
		}
	}
	return nil
}

// ShipmentView is what the read API answers for an order: the service's
// copy of the order, and its shipment if one was requested.
type ShipmentView struct {
	Order    *OrderCopy    `json:"order"`
	Shipment *ShipmentInfo `json:"shipment"`
}

// ShipmentInfo is a shipment's row.
type ShipmentInfo struct {
	Status    Status    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ErrNotFound means the service has heard of no such order.
var ErrNotFound = errors.New("shipping: no such order")

// View reads what the service knows of an order, from its copy and the
// shipments projection in schema.
func View(ctx context.Context, pool *pgxpool.Pool, schema, orderID string) (ShipmentView, error) {
	var v ShipmentView
	var o OrderCopy
	err := pool.QueryRow(ctx, `SELECT order_id, customer_name, status, lines, total_cents, updated_at FROM `+
		pgx.Identifier{schema, OrderCopyTable}.Sanitize()+` WHERE order_id = $1`, orderID).
		Scan(&o.OrderID, &o.CustomerName, &o.Status, &o.Lines, &o.TotalCents, &o.UpdatedAt)
	switch {
	case err == nil:
		v.Order = &o
	case !errors.Is(err, pgx.ErrNoRows):
		return ShipmentView{}, err
	}
	var s ShipmentInfo
	err = pool.QueryRow(ctx, `SELECT status, reason, updated_at FROM `+
		pgx.Identifier{schema, ShipmentsName}.Sanitize()+` WHERE order_id = $1`, orderID).Scan(&s.Status, &s.Reason, &s.UpdatedAt)
	switch {
	case err == nil:
		v.Shipment = &s
	case !errors.Is(err, pgx.ErrNoRows):
		return ShipmentView{}, err
	}
	if v.Order == nil && v.Shipment == nil {
		return ShipmentView{}, ErrNotFound
	}
	return v, nil
}
