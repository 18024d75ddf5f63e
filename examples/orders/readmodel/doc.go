// Package readmodel holds the order example's read models: the projections
// that build them from the log and the queries that read them.
//
//   - [OrderView] (PostgreSQL table order_view): one row per order, shaped
//     for the order screen: customer, status, totals and line items with
//     the product names copied in. A ProductRenamed event rewrites the name
//     in every order that shows the product, with one UPDATE over a GIN
//     index of the line items.
//   - [OrdersByProduct] (PostgreSQL table orders_by_product): one row per
//     product of an order, keyed by product, to answer "which orders
//     contain product X" with status and date filters, paged by keyset,
//     without walking orders and their lines.
//   - [OrderSearch] (Elasticsearch index order_search): full-text search
//     over customer and product names, with filters and sorting.
//
// Each projection folds a batch in memory: it loads the rows the batch
// touches with one query (order_view and order_search also the names of
// every product those orders show, since a line added or removed rebuilds
// all of an order's lines), applies the events in log order and writes the
// rows back with pgsink's unnest upserts, so a rebuild from the start of
// the log goes at thousands of events per second. A live read model must
// equal its own rebuild; the example's tests compare them after random
// commands in random batches.
package readmodel
