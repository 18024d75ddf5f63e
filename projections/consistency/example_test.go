package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/consistency"
	"github.com/stratadev/strata/projections/memsink"
)

func ExampleWaiter_Wait() {
	sink := memsink.New()
	// order_view has applied the log up to position 7:7.
	if err := sink.Apply(context.Background(), projections.ApplyParams{Projection: "order_view", To: es.Position{Commit: 7, Prepare: 7}},
		func(context.Context, *memsink.Tx) error { return nil }); err != nil {
		panic(err)
	}
	waiter := consistency.New(sink, consistency.Config{Wait: 20 * time.Millisecond})
	for _, token := range []string{"", "5:5", "9:9", "nine"} {
		r := httptest.NewRequest("GET", "/orders/o1", nil)
		r.Header.Set(consistency.Header, token)
		w := httptest.NewRecorder()
		res, err := waiter.Wait(w, r, "order_view")
		switch {
		case errors.Is(err, consistency.ErrInvalidToken):
			fmt.Printf("%q: 400\n", token)
		case err != nil:
			fmt.Printf("%q: %v\n", token, err)
		default:
			fmt.Printf("%q: X-Stale %s, behind %q\n", token, w.Header().Get(consistency.StaleHeader), res.Behind)
		}
	}
	// Output:
	// "": X-Stale false, behind ""
	// "5:5": X-Stale false, behind ""
	// "9:9": X-Stale true, behind "order_view"
	// "nine": 400
}
