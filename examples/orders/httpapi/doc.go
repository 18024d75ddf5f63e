// Package httpapi is the order example's HTTP/JSON API, on the standard
// library's router: a write API that turns requests into commands on a
// [cqrs.Bus], and the read API that UIs call, served from the read models.
//
// Write API (every command takes a JSON body, if any, with Content-Type:
// application/json, else 415, and answers 202 Accepted with the stream,
// its version and the consistency token, also in the X-Consistency-Token
// header):
//
//	POST   /products                        {"product_id"?, "name", "price_cents"}
//	POST   /products/{id}/rename            {"name"}
//	POST   /products/{id}/reprice           {"price_cents"}
//	POST   /products/{id}/discontinue
//	PUT    /products/{id}/stock             {"level"}
//	POST   /orders                          {"order_id"?, "customer_id", "customer_name", "lines": [{"product_id", "quantity"}]}
//	POST   /orders/{id}/items               {"product_id", "quantity"}
//	DELETE /orders/{id}/items/{product}
//	POST   /orders/{id}/checkout            {"card"?: "ok" | "decline" | "slow"}
//	POST   /orders/{id}/confirm
//	POST   /orders/{id}/pay                 {"amount_cents"}
//	POST   /orders/{id}/ship
//	POST   /orders/{id}/cancel              {"reason"?}
//
// An Idempotency-Key header makes a retry harmless: the first request
// binds the key to its content (endpoint, path and body, through
// [Config.Keys]) and its answer; the same key with the same content answers
// that answer again and writes nothing, and with other content answers 422
// idempotency_key_reused. When the body names no product_id or order_id,
// the ID is derived from the key, so that a retry names the same product
// or order.
//
// POST /orders/{id}/checkout freezes the order and starts the checkout
// process (examples/orders/checkout): it reserves the stock of each line
// (set with PUT /products/{id}/stock), takes the payment from a simulated
// gateway that answers by the card, then confirms the order and records
// its payment, or cancels it with nothing held. The order's own
// confirm, pay and cancel are refused (409 order_checking_out) while it
// runs. POST /orders/{id}/confirm stays the back office's way to confirm
// an order without a checkout (no stock is reserved, the payment is
// recorded with /pay).
//
// Read API:
//
//	GET /orders/{id}                        the order view, with "checkout": {"status", "reason"?, ...} once one started
//	GET /products/{id}/orders?status=&from=&to=&limit=&cursor=
//	GET /orders/search?q=&status=&from=&to=&min_total=&max_total=&sort=&limit=&offset=
//
// A read that carries a consistency token (the X-Consistency-Token header,
// or ?after=; both with different values are a 400) waits, up to
// [Config.ReadWait], until the read model has reached it; if it has not by
// then, it answers with what the read model has and the header X-Stale:
// true (projections/consistency does the waiting). GET /orders/{id} waits
// for order_view and for the checkout process's follower
// (process:checkout). A read model that is
// being built for the first time answers 503.
// A search takes at most [Config.SearchTimeout]; its terms at most
// [MaxSearchLength] characters, and offset + limit at most 10,000.
//
// Health ([WithHealth], which the app mounts):
//
//	GET /healthz                          "ok", or "degraded: order_search stalled at ..."
//
// Errors are JSON, {"error": {"code", "message", "fields"?}}: 400 for bad
// input (nothing is written; a path that is not UTF-8 or holds control
// characters is one, and JSON errors name fields as in lines[0].quantity),
// 404 for an unknown order or product, 409 for a command the order's state
// refuses, 415 for a write that is not JSON, 422 for an Idempotency-Key
// used again for another request, 503 while a read model is first built,
// search is off or Elasticsearch fails (with Retry-After).
package httpapi
