package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/examples/orders"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// OrderViewName is the name of the order_view projection and its table.
const OrderViewName = "order_view"

// orderViewProducts is the order_view projection's own table of product
// names, which it copies into the lines of the orders it builds.
const orderViewProducts = "order_view_products"

// OrderView is one order as the order screen shows it.
type OrderView struct {
	OrderID      string     `json:"order_id"`
	CustomerID   string     `json:"customer_id"`
	CustomerName string     `json:"customer_name"`
	Status       string     `json:"status"`
	TotalCents   int64      `json:"total_cents"`
	ItemCount    int        `json:"item_count"` // the sum of the lines' quantities
	Lines        []ViewLine `json:"lines"`
	PlacedAt     time.Time  `json:"placed_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	Version      int64      `json:"version"` // of the order's stream
}

// ViewLine is a line item of an [OrderView].
type ViewLine struct {
	ProductID      string `json:"product_id"`
	ProductName    string `json:"product_name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// OrderViews is the order_view projection, a [pgsink.Rebuildable].
type OrderViews struct{}

var _ pgsink.Rebuildable = OrderViews{}

// Name implements [projections.Projection].
func (OrderViews) Name() string { return OrderViewName }

// Handles implements [projections.Projection]. OrderPlaced.v1 events reach
// the projection too: the registry upcasts them into OrderPlaced.
func (OrderViews) Handles() []string {
	return []string{orders.TypeProductCreated, orders.TypeProductRenamed,
		orders.TypeOrderPlaced, orders.TypeItemAdded, orders.TypeItemRemoved,
		orders.TypeOrderConfirmed, orders.TypeOrderPaid, orders.TypeOrderShipped, orders.TypeOrderCancelled}
}

// Tables implements [pgsink.Rebuildable].
func (OrderViews) Tables() []string { return []string{OrderViewName, orderViewProducts} }

// Setup implements [pgsink.Rebuildable].
func (OrderViews) Setup(ctx context.Context, tx *pgsink.Tx) error {
	view, products := tx.Table(OrderViewName).Sanitize(), tx.Table(orderViewProducts).Sanitize()
	_, err := tx.Exec(ctx, `
		CREATE TABLE `+view+` (
			order_id      text        PRIMARY KEY,
			customer_id   text        NOT NULL,
			customer_name text        NOT NULL,
			status        text        NOT NULL,
			total_cents   bigint      NOT NULL,
			item_count    integer     NOT NULL,
			lines         jsonb       NOT NULL,
			placed_at     timestamptz NOT NULL,
			updated_at    timestamptz NOT NULL,
			version       bigint      NOT NULL
		);
		CREATE INDEX ON `+view+` USING gin (lines jsonb_path_ops);
		CREATE TABLE `+products+` (
			product_id text   PRIMARY KEY,
			name       text   NOT NULL,
			version    bigint NOT NULL
		)`)
	return err
}

// HandleBatch implements [projections.Projection].
func (OrderViews) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	b := newFold(tx.Table(orderViewProducts))
	if err := b.load(ctx, tx, events, tx.Table(OrderViewName)); err != nil {
		return err
	}
	if err := b.apply(events); err != nil {
		return err
	}
	return b.write(ctx, tx, tx.Table(OrderViewName))
}

// fold is the state of one batch of the order_view projection: the views
// and product names it touches, changed in memory and written back at the
// end.
type fold struct {
	productsTable pgx.Identifier
	views         map[string]*OrderView
	order         []string               // view IDs in the order first touched
	names         map[string]productName // product ID → name, as loaded and changed
	namesChanged  map[string]bool
	renamed       []string                     // products renamed in the batch, in order
	last          map[string]projections.Event // order ID → the last event that changed it
	renames       map[string]projections.Event // product ID → its last rename in the batch
}

// productName is a product's name and the version of its stream that set it.
type productName struct {
	name    string
	version int64
}

func newFold(products pgx.Identifier) *fold {
	return &fold{productsTable: products, views: map[string]*OrderView{}, names: map[string]productName{},
		namesChanged: map[string]bool{}, last: map[string]projections.Event{}, renames: map[string]projections.Event{}}
}

// orderID returns the ID of the order an event is about, or "".
func orderID(data any) string {
	switch e := data.(type) {
	case orders.OrderPlaced:
		return e.OrderID
	case orders.ItemAdded:
		return e.OrderID
	case orders.ItemRemoved:
		return e.OrderID
	case orders.OrderConfirmed:
		return e.OrderID
	case orders.OrderPaid:
		return e.OrderID
	case orders.OrderShipped:
		return e.OrderID
	case orders.OrderCancelled:
		return e.OrderID
	}
	return ""
}

// load reads the views that the batch's events change and the names of the
// products they mention or the views' lines show: a line added to or
// removed from a stored view rebuilds every line of it, which needs the
// names of the products already on it too.
func (f *fold) load(ctx context.Context, tx *pgsink.Tx, events []projections.Event, table pgx.Identifier) error {
	var ids, products []string
	seen := map[string]bool{}
	addProduct := func(p string) {
		if !seen["p"+p] {
			seen["p"+p] = true
			products = append(products, p)
		}
	}
	for _, ev := range events {
		if id := orderID(ev.Data); id != "" && !seen["o"+id] {
			seen["o"+id] = true
			ids = append(ids, id)
		}
		var ps []string
		switch e := ev.Data.(type) {
		case orders.OrderPlaced:
			for _, l := range e.Lines {
				ps = append(ps, l.ProductID)
			}
		case orders.ItemAdded:
			ps = append(ps, e.Line.ProductID)
		case orders.ProductCreated:
			ps = append(ps, e.ProductID)
		case orders.ProductRenamed:
			ps = append(ps, e.ProductID)
		}
		for _, p := range ps {
			addProduct(p)
		}
	}
	if len(ids) > 0 {
		rows, err := tx.Query(ctx, `SELECT order_id, customer_id, customer_name, status, total_cents, item_count,
			lines, placed_at, updated_at, version FROM `+table.Sanitize()+` WHERE order_id = ANY($1)`, ids)
		if err != nil {
			return fmt.Errorf("load order views: %w", err)
		}
		views, err := pgx.CollectRows(rows, scanOrderView)
		if err != nil {
			return fmt.Errorf("load order views: %w", err)
		}
		for _, v := range views {
			f.views[v.OrderID] = v
			for _, l := range v.Lines {
				addProduct(l.ProductID)
			}
		}
	}
	if len(products) > 0 {
		rows, err := tx.Query(ctx, `SELECT product_id, name, version FROM `+f.productsTable.Sanitize()+` WHERE product_id = ANY($1)`, products)
		if err != nil {
			return fmt.Errorf("load product names: %w", err)
		}
		var (
			id string
			n  productName
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &n.name, &n.version}, func() error { f.names[id] = n; return nil })
		if err != nil {
			return fmt.Errorf("load product names: %w", err)
		}
	}
	return nil
}

func scanOrderView(row pgx.CollectableRow) (*OrderView, error) {
	v := &OrderView{}
	var lines []byte
	if err := row.Scan(&v.OrderID, &v.CustomerID, &v.CustomerName, &v.Status, &v.TotalCents, &v.ItemCount,
		&lines, &v.PlacedAt, &v.UpdatedAt, &v.Version); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(lines, &v.Lines); err != nil {
		return nil, fmt.Errorf("order view %s: lines: %w", v.OrderID, err)
	}
	return v, nil
}

var errNoView = errors.New("no view of the order: was its OrderPlaced skipped?")

// apply applies the events to the loaded state, in log order. An event of
// a stream version the state already reflects is skipped, which makes the
// fold safe to replay over state that is ahead of the events.
func (f *fold) apply(events []projections.Event) error {
	for _, ev := range events {
		at := ev.Record.RecordedAt.UTC()
		switch e := ev.Data.(type) {
		case orders.ProductCreated:
			f.setName(e.ProductID, e.Name, ev.Record.Version)
		case orders.ProductRenamed:
			if f.setName(e.ProductID, e.Name, ev.Record.Version) {
				f.renamed = append(f.renamed, e.ProductID)
				f.renames[e.ProductID] = ev
			}
		case orders.OrderPlaced:
			if v := f.views[e.OrderID]; v != nil && v.Version >= ev.Record.Version {
				f.mark(e.OrderID, ev)
				continue
			}
			v := &OrderView{OrderID: e.OrderID, CustomerID: e.CustomerID, CustomerName: e.CustomerName,
				Status: string(orders.StatusPlaced), PlacedAt: at}
			f.views[e.OrderID] = v
			f.setLines(v, e.Lines, ev, at)
			f.mark(e.OrderID, ev)
		default:
			id := orderID(e)
			v := f.views[id]
			if v == nil {
				return fmt.Errorf("order %s: %w", id, errNoView)
			}
			f.mark(id, ev)
			if v.Version >= ev.Record.Version {
				continue
			}
			switch e := e.(type) {
			case orders.ItemAdded:
				f.setLines(v, orders.AddLine(linesOf(v), e.Line), ev, at)
			case orders.ItemRemoved:
				f.setLines(v, orders.RemoveLine(linesOf(v), e.ProductID), ev, at)
			case orders.OrderConfirmed:
				v.Status = string(orders.StatusConfirmed)
			case orders.OrderPaid:
				v.Status = string(orders.StatusPaid)
			case orders.OrderShipped:
				v.Status = string(orders.StatusShipped)
			case orders.OrderCancelled:
				v.Status = string(orders.StatusCancelled)
			}
			v.UpdatedAt, v.Version = at, ev.Record.Version
		}
	}
	return nil
}

// mark records that ev touched order id.
func (f *fold) mark(id string, ev projections.Event) {
	if _, ok := f.last[id]; !ok {
		f.order = append(f.order, id)
	}
	f.last[id] = ev
}

// setName records a product's name, unless the state has a later one, and
// reports whether it did.
func (f *fold) setName(id, name string, version int64) bool {
	if f.names[id].version >= version {
		return false
	}
	f.names[id] = productName{name: name, version: version}
	f.namesChanged[id] = true
	// Views in memory show the new name at once; stored ones get it in write.
	for _, v := range f.views {
		for i := range v.Lines {
			if v.Lines[i].ProductID == id {
				v.Lines[i].ProductName = name
			}
		}
	}
	return true
}

func linesOf(v *OrderView) []orders.Line {
	ls := make([]orders.Line, len(v.Lines))
	for i, l := range v.Lines {
		ls[i] = orders.Line{ProductID: l.ProductID, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return ls
}

func (f *fold) setLines(v *OrderView, lines []orders.Line, ev projections.Event, at time.Time) {
	v.Lines = make([]ViewLine, len(lines))
	v.ItemCount, v.TotalCents = 0, 0
	for i, l := range lines {
		total := int64(l.Quantity) * l.UnitPriceCents
		v.Lines[i] = ViewLine{ProductID: l.ProductID, ProductName: f.names[l.ProductID].name, Quantity: l.Quantity,
			UnitPriceCents: l.UnitPriceCents, LineTotalCents: total}
		v.ItemCount += l.Quantity
		v.TotalCents += total
	}
	v.UpdatedAt, v.Version = at, ev.Record.Version
}

// write stores the changed product names and views, then gives the stored
// views of renamed products their new names.
func (f *fold) write(ctx context.Context, tx *pgsink.Tx, table pgx.Identifier) error {
	if len(f.namesChanged) > 0 {
		ids := make([]string, 0, len(f.namesChanged))
		names := make([]string, 0, len(f.namesChanged))
		versions := make([]int64, 0, len(f.namesChanged))
		for id := range f.namesChanged {
			ids, names, versions = append(ids, id), append(names, f.names[id].name), append(versions, f.names[id].version)
		}
		if _, err := tx.Upsert(ctx, pgsink.Upsert{Table: f.productsTable,
			Columns: []string{"product_id", "name", "version"}, Key: []string{"product_id"}},
			ids, names, versions); err != nil {
			return err
		}
	}
	if len(f.order) > 0 {
		n := len(f.order)
		var (
			ids, customers, names, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			totals, versions                = make([]int64, n), make([]int64, n)
			counts                          = make([]int32, n)
			lines                           = make([]json.RawMessage, n)
			placed, updated                 = make([]time.Time, n), make([]time.Time, n)
		)
		for i, id := range f.order {
			v := f.views[id]
			b, err := json.Marshal(v.Lines)
			if err != nil {
				return err
			}
			ids[i], customers[i], names[i], statuses[i] = v.OrderID, v.CustomerID, v.CustomerName, v.Status
			totals[i], versions[i], counts[i], lines[i] = v.TotalCents, v.Version, int32(v.ItemCount), b
			placed[i], updated[i] = v.PlacedAt, v.UpdatedAt
		}
		if _, err := tx.Upsert(ctx, pgsink.Upsert{Table: table,
			Columns: []string{"order_id", "customer_id", "customer_name", "status", "total_cents", "item_count", "lines", "placed_at", "updated_at", "version"},
			Key:     []string{"order_id"}},
			ids, customers, names, statuses, totals, counts, lines, placed, updated, versions); err != nil {
			return err
		}
	}
	done := map[string]bool{}
	for _, id := range f.renamed {
		if done[id] {
			continue
		}
		done[id] = true
		if err := renameInViews(ctx, tx, table, id, f.names[id].name); err != nil {
			return err
		}
	}
	return nil
}

// renameInViews sets the name of product id in the lines of every stored
// view that shows it, in one statement that the GIN index on lines serves.
func renameInViews(ctx context.Context, tx *pgsink.Tx, table pgx.Identifier, id, name string) error {
	contains, err := json.Marshal([]map[string]string{{"product_id": id}})
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE `+table.Sanitize()+` v SET lines = (
			SELECT jsonb_agg(CASE WHEN l->>'product_id' = $1 THEN jsonb_set(l, '{product_name}', to_jsonb($2::text)) ELSE l END ORDER BY n)
			FROM jsonb_array_elements(v.lines) WITH ORDINALITY AS x(l, n))
		WHERE v.lines @> $3::jsonb`, id, name, string(contains))
	if err != nil {
		return fmt.Errorf("rename product %s in order views: %w", id, err)
	}
	return nil
}
