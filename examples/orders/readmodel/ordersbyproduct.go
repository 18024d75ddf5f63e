package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// OrdersByProductName is the name of the orders_by_product projection and
// its table.
const OrdersByProductName = "orders_by_product"

// ProductOrder is an order that contains a product, as
// orders_by_product lists it.
type ProductOrder struct {
	OrderID         string    `json:"order_id"`
	CustomerName    string    `json:"customer_name"`
	Status          string    `json:"status"`
	PlacedAt        time.Time `json:"placed_at"`
	Quantity        int       `json:"quantity"` // of the product
	UnitPriceCents  int64     `json:"unit_price_cents"`
	OrderTotalCents int64     `json:"order_total_cents"`
}

// OrdersByProduct is the orders_by_product projection, a
// [pgsink.Rebuildable]: a row per (product, order), indexed by product and
// date.
type OrdersByProduct struct{}

var _ pgsink.Rebuildable = OrdersByProduct{}

// Name implements [projections.Projection].
func (OrdersByProduct) Name() string { return OrdersByProductName }

// Handles implements [projections.Projection]. OrderPlaced.v1 events reach
// the projection too: the registry upcasts them into OrderPlaced.
func (OrdersByProduct) Handles() []string {
	return []string{orders.TypeOrderPlaced, orders.TypeItemAdded, orders.TypeItemRemoved,
		orders.TypeOrderConfirmed, orders.TypeOrderPaid, orders.TypeOrderShipped, orders.TypeOrderCancelled}
}

// Tables implements [pgsink.Rebuildable].
func (OrdersByProduct) Tables() []string { return []string{OrdersByProductName} }

// Setup implements [pgsink.Rebuildable].
func (OrdersByProduct) Setup(ctx context.Context, tx *pgsink.Tx) error {
	t := tx.Table(OrdersByProductName).Sanitize()
	_, err := tx.Exec(ctx, `
		CREATE TABLE `+t+` (
			product_id        text        NOT NULL,
			order_id          text        NOT NULL,
			customer_name     text        NOT NULL,
			status            text        NOT NULL,
			placed_at         timestamptz NOT NULL,
			quantity          integer     NOT NULL,
			unit_price_cents  bigint      NOT NULL,
			order_total_cents bigint      NOT NULL,
			PRIMARY KEY (product_id, order_id)
		);
		CREATE INDEX ON `+t+` (product_id, placed_at DESC, order_id DESC);
		CREATE INDEX ON `+t+` (order_id)`)
	return err
}

// productOrders is an order as orders_by_product knows it.
type productOrders struct {
	customer, status string
	placedAt         time.Time
	lines            []orders.Line
	stored           bool // has rows to replace
}

// HandleBatch implements [projections.Projection]: it loads the rows of the
// orders the batch touches, applies the events to them and replaces those
// orders' rows.
func (OrdersByProduct) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	table := tx.Table(OrdersByProductName)
	var ids []string
	seen := map[string]bool{}
	for _, ev := range events {
		if _, placed := ev.Data.(orders.OrderPlaced); placed {
			continue
		}
		if id := orderID(ev.Data); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	state := map[string]*productOrders{}
	var touched []string
	isTouched := map[string]bool{}
	if len(ids) > 0 {
		rows, err := tx.Query(ctx, `SELECT order_id, product_id, customer_name, status, placed_at, quantity, unit_price_cents
			FROM `+table.Sanitize()+` WHERE order_id = ANY($1) ORDER BY order_id, product_id`, ids)
		if err != nil {
			return fmt.Errorf("load orders by product: %w", err)
		}
		var (
			oid, customer, status string
			l                     orders.Line
			at                    time.Time
		)
		_, err = pgx.ForEachRow(rows, []any{&oid, &l.ProductID, &customer, &status, &at, &l.Quantity, &l.UnitPriceCents}, func() error {
			o := state[oid]
			if o == nil {
				o = &productOrders{customer: customer, status: status, placedAt: at, stored: true}
				state[oid] = o
			}
			o.lines = append(o.lines, l)
			return nil
		})
		if err != nil {
			return fmt.Errorf("load orders by product: %w", err)
		}
	}
	for _, ev := range events {
		id := orderID(ev.Data)
		o := state[id]
		if e, ok := ev.Data.(orders.OrderPlaced); ok {
			o = &productOrders{customer: e.CustomerName, status: string(orders.StatusPlaced),
				placedAt: ev.Record.RecordedAt.UTC(), lines: e.Lines, stored: o != nil && o.stored}
			state[id] = o
		}
		if o == nil {
			return fmt.Errorf("order %s: %w", id, errNoView)
		}
		if !isTouched[id] {
			isTouched[id] = true
			touched = append(touched, id)
		}
		switch e := ev.Data.(type) {
		case orders.ItemAdded:
			o.lines = orders.AddLine(o.lines, e.Line)
		case orders.ItemRemoved:
			o.lines = orders.RemoveLine(o.lines, e.ProductID)
		case orders.OrderConfirmed:
			o.status = string(orders.StatusConfirmed)
		case orders.OrderPaid:
			o.status = string(orders.StatusPaid)
		case orders.OrderShipped:
			o.status = string(orders.StatusShipped)
		case orders.OrderCancelled:
			o.status = string(orders.StatusCancelled)
		}
	}

	var stale []string
	var (
		products, oids, customers, statuses []string
		placed                              []time.Time
		qtys                                []int32
		prices, totals                      []int64
	)
	for _, id := range touched {
		o := state[id]
		if o.stored {
			stale = append(stale, id)
		}
		total := orders.Total(o.lines)
		for _, l := range o.lines {
			products, oids, customers, statuses = append(products, l.ProductID), append(oids, id), append(customers, o.customer), append(statuses, o.status)
			placed, qtys = append(placed, o.placedAt), append(qtys, int32(l.Quantity))
			prices, totals = append(prices, l.UnitPriceCents), append(totals, total)
		}
	}
	if len(stale) > 0 {
		if _, err := tx.DeleteKeys(ctx, table, "order_id", "text", stale); err != nil {
			return err
		}
	}
	if len(oids) == 0 {
		return nil
	}
	_, err := tx.Upsert(ctx, pgsink.Upsert{Table: table,
		Columns: []string{"product_id", "order_id", "customer_name", "status", "placed_at", "quantity", "unit_price_cents", "order_total_cents"},
		Key:     []string{"product_id", "order_id"}},
		products, oids, customers, statuses, placed, qtys, prices, totals)
	return err
}
