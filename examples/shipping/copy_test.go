package shipping_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders/contract"
	"github.com/stratadev/strata/examples/shipping"
)

// The copy follows an order through the contract's events, ignores
// changes to orders it never saw placed, and refuses unknown types.
func TestApplyToCopy(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.NewSchema(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, shipping.OrderCopyDDL(schema)); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	apply := func(typ string, v any) error {
		t.Helper()
		value, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := shipping.ApplyToCopy(ctx, tx, schema, typ, value, at); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	tea := contract.Line{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}
	cup := contract.Line{ProductID: "cup", Quantity: 1, UnitPriceCents: 1200}
	for _, step := range []struct {
		typ string
		v   any
	}{
		{contract.TypeOrderPlaced, contract.OrderPlaced{OrderID: "o1", CustomerName: "Ann", Lines: []contract.Line{tea}, TotalCents: 900}},
		{contract.TypeOrderItemAdded, contract.OrderItemAdded{OrderID: "o1", Line: cup}},
		{contract.TypeOrderItemAdded, contract.OrderItemAdded{OrderID: "o1", Line: contract.Line{ProductID: "tea", Quantity: 1, UnitPriceCents: 450}}},
		{contract.TypeOrderItemRemoved, contract.OrderItemRemoved{OrderID: "o1", ProductID: "cup"}},
		{contract.TypeOrderConfirmed, contract.OrderConfirmed{OrderID: "o1"}},
		{contract.TypeOrderItemAdded, contract.OrderItemAdded{OrderID: "o-unknown", Line: cup}}, // never placed: ignored
	} {
		if err := apply(step.typ, step.v); err != nil {
			t.Fatalf("apply %s: %v", step.typ, err)
		}
	}
	if err := apply("order.placed.v9", map[string]string{"order_id": "o2"}); !errors.Is(err, shipping.ErrUnknownType) {
		t.Errorf("apply of an unknown type: %v; want ErrUnknownType", err)
	}

	rows, err := pool.Query(ctx, `SELECT order_id, customer_name, status, lines, total_cents, updated_at FROM `+
		pgx.Identifier{schema, shipping.OrderCopyTable}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shipping.OrderCopy, error) {
		var o shipping.OrderCopy
		err := r.Scan(&o.OrderID, &o.CustomerName, &o.Status, &o.Lines, &o.TotalCents, &o.UpdatedAt)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := shipping.OrderCopy{OrderID: "o1", CustomerName: "Ann", Status: "confirmed",
		Lines: []contract.Line{{ProductID: "tea", Quantity: 3, UnitPriceCents: 450}}, TotalCents: 1350, UpdatedAt: at}
	if len(got) != 1 || got[0].OrderID != want.OrderID || got[0].Status != want.Status || got[0].TotalCents != want.TotalCents ||
		!slices.Equal(got[0].Lines, want.Lines) || !got[0].UpdatedAt.Equal(at) || got[0].CustomerName != want.CustomerName {
		t.Errorf("copy = %+v; want only %+v", got, want)
	}
}
