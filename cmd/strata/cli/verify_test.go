package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := opts{projections: []cli.Projection{{Projection: &orderView{}}}}
	res := e.place(t, 1, 2, 3)
	e.runUntil(t, o, res.Position)
	pos := res.Position.String()

	e.mustRun(t, o, "projections", "verify", "order_view").check(t, 0,
		"order_view equals its rebuild at "+pos+": 3 rows in 1 tables, 3 events\n")

	e.exec(t, `DELETE FROM {{schema}}.order_view WHERE order_id = 'o1'`)
	e.exec(t, `INSERT INTO {{schema}}.order_view VALUES ('o9', 9)`)
	e.exec(t, `UPDATE {{schema}}.order_view SET total = 99 WHERE order_id = 'o2'`)
	r := e.cli(t.Context(), o, "projections", "verify", "order_view")
	r.check(t, cli.ExitFailed,
		"order_view differs from its rebuild at "+pos+" (3 events):\n",
		"  order_view: 3 live rows, 3 rebuilt; 1 missing, 1 extra, 1 different\n",
		`    missing    (order_id)=(o1): rebuilt {"total": 1, "order_id": "o1"}`,
		`    different  (order_id)=(o2): total live 99, rebuilt 2`,
		`    extra      (order_id)=(o9): live {"total": 9, "order_id": "o9"}`,
		"order_view has drifted from its rebuild at "+pos+": 3 rows differ (order_view: 1 missing, 1 extra, 1 different)",
		"projections rebuild order_view")

	r = e.cli(t.Context(), o, "projections", "verify", "order_view", "-o", "json", "--samples", "2")
	r.check(t, cli.ExitFailed)
	var d pgsink.Drift
	if err := json.Unmarshal([]byte(r.stdout.String()), &d); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, r.stdout)
	}
	if d.Differences() != 3 || d.Position != res.Position || len(d.Tables) != 1 || len(d.Tables[0].Samples) != 2 ||
		d.Tables[0].Samples[0].Kind != projections.DiffMissing || d.Tables[0].Samples[0].Key[0] != "o1" {
		t.Errorf("verify -o json: %+v; want 3 differences at %s, 2 samples, the first o1 missing", d, pos)
	}

	// What is ignored is not compared.
	e.cli(t.Context(), o, "projections", "verify", "order_view", "--ignore", "order_view.total").check(t, cli.ExitFailed,
		"1 missing, 1 extra, 0 different")

	var shadows int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename <> 'order_view' AND tablename LIKE 'order_view%'`,
		e.schema).Scan(&shadows); err != nil {
		t.Fatal(err)
	}
	if shadows != 0 {
		t.Errorf("%d shadow tables left", shadows)
	}

	e.cli(t.Context(), opts{}, "projections", "verify", "order_view").check(t, cli.ExitUsage, "this binary has no projections registered")
	e.cli(t.Context(), o, "projections", "verify", "order_view", "--ignore", "nope.total").check(t, cli.ExitFailed, `"nope.total" is not table.column`)
	if strings.Contains(r.stderr.String(), "\n\n") {
		t.Errorf("blank lines in the error output:\n%s", r.stderr)
	}
}
