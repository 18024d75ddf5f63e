package readmodel

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/pgsink"
)

// OrderSearchName is the name of the order_search projection and the
// default alias of its index.
const OrderSearchName = "order_search"

// Tables of the order_search projection's state in PostgreSQL.
const (
	orderSearchState    = "order_search_state"
	orderSearchProducts = "order_search_products"
)

// SearchDoc is the document of an order in the order_search index.
type SearchDoc struct {
	OrderID      string    `json:"order_id"`
	CustomerID   string    `json:"customer_id"`
	CustomerName string    `json:"customer_name"`
	Status       string    `json:"status"`
	TotalCents   int64     `json:"total_cents"`
	ItemCount    int       `json:"item_count"`
	ProductIDs   []string  `json:"product_ids"`
	ProductNames []string  `json:"product_names"`
	PlacedAt     time.Time `json:"placed_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func searchDoc(v *OrderView) SearchDoc {
	d := SearchDoc{OrderID: v.OrderID, CustomerID: v.CustomerID, CustomerName: v.CustomerName, Status: v.Status,
		TotalCents: v.TotalCents, ItemCount: v.ItemCount, PlacedAt: v.PlacedAt, UpdatedAt: v.UpdatedAt,
		ProductIDs: make([]string, len(v.Lines)), ProductNames: make([]string, len(v.Lines))}
	for i, l := range v.Lines {
		d.ProductIDs[i], d.ProductNames[i] = l.ProductID, l.ProductName
	}
	return d
}

// OrderSearch is the order_search projection, an [elasticsink.Projection].
//
// A search document needs the whole order (its lines, with product names),
// which Elasticsearch's partial updates cannot derive from one event, so
// the projection keeps the orders it has seen in PostgreSQL tables of its
// own (next to its checkpoint, in the same transaction) with the fold of
// order_view, and indexes each changed order's document in full. The fold
// skips events whose stream version the stored state already reflects, so
// a rebuild of the index, which replays the log while these tables are
// already ahead, indexes documents from the newer state; the alias moves
// only when the rebuild has caught up, by which time every document is the
// current one.
type OrderSearch struct {
	// Alias is the index's alias. Defaults to OrderSearchName.
	Alias string
}

var _ elasticsink.Projection = OrderSearch{}

func (p OrderSearch) alias() string { return cmp.Or(p.Alias, OrderSearchName) }

// Name implements [projections.Projection].
func (OrderSearch) Name() string { return OrderSearchName }

// Handles implements [projections.Projection].
func (OrderSearch) Handles() []string { return OrderViews{}.Handles() }

// Index implements [elasticsink.Projection].
func (p OrderSearch) Index() elasticsink.Index {
	return elasticsink.Index{
		Alias: p.alias(),
		Mappings: json.RawMessage(`{"dynamic": "strict", "properties": {
			"order_id":      {"type": "keyword"},
			"customer_id":   {"type": "keyword"},
			"customer_name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
			"status":        {"type": "keyword"},
			"total_cents":   {"type": "long"},
			"item_count":    {"type": "integer"},
			"product_ids":   {"type": "keyword"},
			"product_names": {"type": "text"},
			"placed_at":     {"type": "date"},
			"updated_at":    {"type": "date"}
		}}`),
		Settings: json.RawMessage(`{"number_of_shards": 1, "number_of_replicas": 0}`),
	}
}

// SetupState creates the projection's PostgreSQL tables if they are
// missing. Call it once before running the projection.
func (OrderSearch) SetupState(ctx context.Context, tx pgx.Tx, schema string) error {
	state, products := pgx.Identifier{schema, orderSearchState}.Sanitize(), pgx.Identifier{schema, orderSearchProducts}.Sanitize()
	_, err := tx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS `+state+` (
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
		CREATE INDEX IF NOT EXISTS order_search_state_lines ON `+state+` USING gin (lines jsonb_path_ops);
		CREATE TABLE IF NOT EXISTS `+products+` (
			product_id text   PRIMARY KEY,
			name       text   NOT NULL,
			version    bigint NOT NULL
		)`)
	return err
}

// HandleBatch implements [projections.Projection].
func (p OrderSearch) HandleBatch(ctx context.Context, tx *elasticsink.Tx, events []projections.Event) error {
	ptx, ok := tx.Postgres().(*pgsink.Tx)
	if !ok {
		return fmt.Errorf("order search: checkpoints kept by %T, not by a pgsink.Sink", tx.Postgres())
	}
	state, products := ptx.Table(orderSearchState), ptx.Table(orderSearchProducts)
	f := newFold(products)
	if err := f.load(ctx, ptx, events, state); err != nil {
		return err
	}
	if err := f.apply(events); err != nil {
		return err
	}
	if err := f.write(ctx, ptx, state); err != nil {
		return err
	}
	for _, id := range f.order {
		if err := tx.Index(f.last[id], p.alias(), id, searchDoc(f.views[id])); err != nil {
			return err
		}
	}
	// Every stored order that shows a renamed product gets its document
	// again, with the new name.
	for pid, ev := range f.renames {
		contains, err := json.Marshal([]map[string]string{{"product_id": pid}})
		if err != nil {
			return err
		}
		rows, err := ptx.Query(ctx, `SELECT order_id, customer_id, customer_name, status, total_cents, item_count,
			lines, placed_at, updated_at, version FROM `+state.Sanitize()+` WHERE lines @> $1::jsonb`, string(contains))
		if err != nil {
			return fmt.Errorf("orders of renamed product %s: %w", pid, err)
		}
		views, err := pgx.CollectRows(rows, scanOrderView)
		if err != nil {
			return fmt.Errorf("orders of renamed product %s: %w", pid, err)
		}
		for _, v := range views {
			if err := tx.Index(ev, p.alias(), v.OrderID, searchDoc(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// SearchSorts are the sorts a [SearchQuery] may ask for.
var SearchSorts = []string{"", "relevance", "placed_at", "-placed_at", "total", "-total"}

// SearchQuery asks order_search for orders.
type SearchQuery struct {
	// Text is matched against customer and product names; "" matches all.
	Text                         string
	Status                       string    // "" for all
	From, To                     time.Time // placed_at range, [From, To); zero for no bound
	MinTotalCents, MaxTotalCents int64     // 0 for no bound
	// Sort is one of SearchSorts: "" sorts by relevance when Text is set
	// and newest first otherwise; a leading "-" sorts descending.
	Sort          string
	Limit, Offset int // Limit defaults to 20
}

// SearchResult is a page of search hits.
type SearchResult struct {
	Total  int64       `json:"total"`
	Orders []SearchHit `json:"orders"`
}

// SearchHit is an order that matched.
type SearchHit struct {
	SearchDoc
	Score float64 `json:"score"`
}

// Search reads the order_search index.
type Search struct {
	Client *elasticsearch.Client
	// Alias is the index's alias. Defaults to OrderSearchName.
	Alias string
}

// Refresh makes every document written so far searchable. A read that
// waited for a consistency token calls it before searching, so that it
// sees its own write without making every batch wait for a refresh.
func (s *Search) Refresh(ctx context.Context) error {
	alias := cmp.Or(s.Alias, OrderSearchName)
	res, err := s.Client.Indices.Refresh(s.Client.Indices.Refresh.WithContext(ctx), s.Client.Indices.Refresh.WithIndex(alias))
	if err != nil {
		return fmt.Errorf("refresh %s: %w", alias, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("refresh %s: %s", alias, res.Status())
	}
	return nil
}

// Search runs q.
func (s *Search) Search(ctx context.Context, q SearchQuery) (*SearchResult, error) {
	var filter []any
	if q.Status != "" {
		filter = append(filter, map[string]any{"term": map[string]any{"status": q.Status}})
	}
	if !q.From.IsZero() || !q.To.IsZero() {
		r := map[string]any{}
		if !q.From.IsZero() {
			r["gte"] = q.From.UTC().Format(time.RFC3339Nano)
		}
		if !q.To.IsZero() {
			r["lt"] = q.To.UTC().Format(time.RFC3339Nano)
		}
		filter = append(filter, map[string]any{"range": map[string]any{"placed_at": r}})
	}
	if q.MinTotalCents > 0 || q.MaxTotalCents > 0 {
		r := map[string]any{}
		if q.MinTotalCents > 0 {
			r["gte"] = q.MinTotalCents
		}
		if q.MaxTotalCents > 0 {
			r["lte"] = q.MaxTotalCents
		}
		filter = append(filter, map[string]any{"range": map[string]any{"total_cents": r}})
	}
	boolQ := map[string]any{"filter": filter}
	if q.Text != "" {
		boolQ["must"] = map[string]any{"multi_match": map[string]any{
			"query": q.Text, "fields": []string{"customer_name^2", "product_names"}, "operator": "and", "fuzziness": "AUTO"}}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	body := map[string]any{
		"query": map[string]any{"bool": boolQ}, "from": q.Offset, "size": limit, "track_total_hits": true,
	}
	switch sort := q.Sort; {
	case sort == "relevance" || (sort == "" && q.Text != ""):
		body["sort"] = []any{"_score", map[string]any{"placed_at": "desc"}, map[string]any{"order_id": "asc"}}
	case sort == "" || sort == "-placed_at":
		body["sort"] = []any{map[string]any{"placed_at": "desc"}, map[string]any{"order_id": "asc"}}
	case sort == "placed_at":
		body["sort"] = []any{map[string]any{"placed_at": "asc"}, map[string]any{"order_id": "asc"}}
	case sort == "total":
		body["sort"] = []any{map[string]any{"total_cents": "asc"}, map[string]any{"order_id": "asc"}}
	case sort == "-total":
		body["sort"] = []any{map[string]any{"total_cents": "desc"}, map[string]any{"order_id": "asc"}}
	}
	res, err := elasticsink.Search[SearchDoc](ctx, s.Client, cmp.Or(s.Alias, OrderSearchName), body)
	if err != nil {
		return nil, fmt.Errorf("search orders: %w", err)
	}
	out := &SearchResult{Total: res.Total, Orders: make([]SearchHit, len(res.Hits))}
	for i, h := range res.Hits {
		out.Orders[i] = SearchHit{SearchDoc: h.Source, Score: h.Score}
	}
	return out, nil
}
