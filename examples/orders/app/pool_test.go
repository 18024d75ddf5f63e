package app_test

import (
	"testing"

	"github.com/stratadev/strata/es/pgstore/pgtest"
	"github.com/stratadev/strata/examples/orders/app"
)

func TestNewPoolSize(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	sep := "?"
	for i := range len(url) {
		if url[i] == '?' {
			sep = "&"
		}
	}
	for _, tc := range []struct {
		name string
		url  string
		max  int32
		want int32
	}{
		{"default", url, 0, app.PoolMaxConnsDefault},
		{"flag", url, 5, 5},
		{"URL", url + sep + "pool_max_conns=7", 0, 7},
		{"flag over URL", url + sep + "pool_max_conns=7", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, err := app.NewPool(t.Context(), tc.url, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if got := pool.Config().MaxConns; got != tc.want {
				t.Errorf("MaxConns = %d, want %d", got, tc.want)
			}
			if got := pool.Config().ConnConfig.RuntimeParams["application_name"]; got != "orders" {
				t.Errorf("application_name = %q, want orders", got)
			}
		})
	}
	if _, err := app.NewPool(t.Context(), "postgres://127.0.0.1:1/nothing?connect_timeout=1", 0); err == nil {
		t.Error("NewPool on a closed port succeeded; want an error")
	}
}
