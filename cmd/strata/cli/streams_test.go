package cli_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stratadev/strata/es"
)

func TestStreamsListPrefixAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.place(t, 1, 2, 3)
	if _, err := e.store.Append(t.Context(), "order_x", es.NoStream, mustEventType("OrderPlaced", `{"id":"x","total":1}`)); err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) []string {
		t.Helper()
		r := e.mustRun(t, opts{}, append([]string{"streams", "list", "-o", "json"}, args...)...)
		var out []struct{ Stream string }
		if err := json.Unmarshal([]byte(r.stdout.String()), &out); err != nil {
			t.Fatalf("%v:\n%s", err, r.stdout)
		}
		names := []string{}
		for _, s := range out {
			names = append(names, s.Stream)
		}
		return names
	}
	if got := list("--prefix", "order_"); !slices.Equal(got, []string{"order_x"}) {
		t.Errorf("streams list --prefix order_ = %q; want [order_x]: _ is no wildcard", got)
	}
	if got := list("--prefix", "order-", "--limit", "2"); !slices.Equal(got, []string{"order-o1", "order-o2"}) {
		t.Errorf("streams list --prefix order- --limit 2 = %q; want [order-o1 order-o2]", got)
	}
	if got := list("--prefix", "order-", "--limit", "2", "--after", "order-o2"); !slices.Equal(got, []string{"order-o3"}) {
		t.Errorf("streams list --prefix order- --limit 2 --after order-o2 = %q; want [order-o3]", got)
	}
	if got := list("--prefix", "nothing"); len(got) != 0 {
		t.Errorf("streams list --prefix nothing = %q; want none", got)
	}
}
