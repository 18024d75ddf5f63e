package readmodel

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reader queries the PostgreSQL read models.
type Reader struct {
	pool                       *pgxpool.Pool
	orderView, ordersByProduct string // sanitized table names
}

// NewReader returns a reader of the tables in schema (pgsink's
// Config.ReadSchema). The caller owns pool.
func NewReader(pool *pgxpool.Pool, schema string) *Reader {
	return &Reader{pool: pool,
		orderView:       pgx.Identifier{schema, OrderViewName}.Sanitize(),
		ordersByProduct: pgx.Identifier{schema, OrdersByProductName}.Sanitize(),
	}
}

// ErrNotFound means the read model has no such row.
var ErrNotFound = errors.New("not found")

// Order returns the view of an order: one query on the primary key.
func (r *Reader) Order(ctx context.Context, id string) (*OrderView, error) {
	rows, err := r.pool.Query(ctx, `SELECT order_id, customer_id, customer_name, status, total_cents, item_count,
		lines, placed_at, updated_at, version FROM `+r.orderView+` WHERE order_id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("read order view %s: %w", id, err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, scanOrderView)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read order view %s: %w", id, err)
	}
	return v, nil
}

// ProductOrdersQuery asks which orders contain a product.
type ProductOrdersQuery struct {
	ProductID string
	Status    string    // only orders in this status; "" for all
	From, To  time.Time // placed at or after From and before To; zero for no bound
	Limit     int       // defaults to 20, at most 100
	Cursor    string    // the NextCursor of the previous page; "" for the first
}

// ProductOrdersPage is a page of orders, newest first.
type ProductOrdersPage struct {
	ProductID  string         `json:"product_id"`
	Orders     []ProductOrder `json:"orders"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// ErrBadCursor means a cursor was not one this reader made.
var ErrBadCursor = errors.New("invalid cursor")

// Validate checks what can be checked without the database: the cursor.
// It returns [ErrBadCursor] for a cursor this reader did not make, so that
// an API can refuse bad input before it waits for the read model.
func (q ProductOrdersQuery) Validate() error {
	if q.Cursor == "" {
		return nil
	}
	_, _, err := decodeCursor(q.Cursor)
	return err
}

// ProductOrders returns the orders that contain a product, newest first,
// paged by keyset (placed_at, order_id) on the index of orders_by_product.
func (r *Reader) ProductOrders(ctx context.Context, q ProductOrdersQuery) (*ProductOrdersPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 100)
	var (
		afterAt *time.Time
		afterID *string
	)
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		afterAt, afterID = &at, &id
	}
	var from, to *time.Time
	if !q.From.IsZero() {
		from = &q.From
	}
	if !q.To.IsZero() {
		to = &q.To
	}
	rows, err := r.pool.Query(ctx, `SELECT order_id, customer_name, status, placed_at, quantity, unit_price_cents, order_total_cents
		FROM `+r.ordersByProduct+`
		WHERE product_id = $1
		  AND ($2 = '' OR status = $2)
		  AND ($3::timestamptz IS NULL OR placed_at >= $3)
		  AND ($4::timestamptz IS NULL OR placed_at < $4)
		  AND ($5::timestamptz IS NULL OR (placed_at, order_id) < ($5, $6::text))
		ORDER BY placed_at DESC, order_id DESC
		LIMIT $7`, q.ProductID, q.Status, from, to, afterAt, afterID, limit+1)
	if err != nil {
		return nil, fmt.Errorf("read orders of product %s: %w", q.ProductID, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ProductOrder, error) {
		var o ProductOrder
		err := row.Scan(&o.OrderID, &o.CustomerName, &o.Status, &o.PlacedAt, &o.Quantity, &o.UnitPriceCents, &o.OrderTotalCents)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("read orders of product %s: %w", q.ProductID, err)
	}
	page := &ProductOrdersPage{ProductID: q.ProductID, Orders: list}
	if len(list) > limit {
		page.Orders = list[:limit]
		last := page.Orders[limit-1]
		page.NextCursor = encodeCursor(last.PlacedAt, last.OrderID)
	}
	if page.Orders == nil {
		page.Orders = []ProductOrder{}
	}
	return page, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(b), "|")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		return time.Time{}, "", ErrBadCursor
	}
	return at, id, nil
}
