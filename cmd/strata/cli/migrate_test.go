package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// migrate --print needs no database; its output, piped into the database,
// leaves a schema that migrate finds up to date.
func TestMigratePrint(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	r := e.mustRun(t, opts{noDB: true}, "--schema", e.schema, "migrate", "--print")
	script := r.stdout.String()
	events := strings.Index(script, "-- events: 001_events (recorded in schema_migrations)")
	checkpoints := strings.Index(script, "-- checkpoints: 001_projections (recorded in pgsink_migrations)")
	if events < 0 || checkpoints < events {
		t.Fatalf("migrate --print does not show the events' then the checkpoints' migration:\n%s", script)
	}
	if !strings.HasPrefix(script, "-- ") || strings.Contains(script, "{{") {
		t.Errorf("migrate --print: want a header comment and no placeholders:\n%.400s", script)
	}
	if _, err := e.pool.Exec(t.Context(), script); err != nil {
		t.Fatalf("apply the printed SQL: %v", err)
	}
	r = e.mustRun(t, opts{}, "migrate")
	want := "events: schema " + e.schema + " is up to date (version 2)\n" +
		"checkpoints: schema " + e.schema + " is up to date (version 1)\n"
	if got := r.stdout.String(); got != want {
		t.Errorf("migrate after the printed SQL printed\n%s\nwant\n%s", got, want)
	}

	// With the events in EventStoreDB, only the checkpoints.
	r = e.mustRun(t, opts{noDB: true}, "--esdb-url", "esdb://127.0.0.1:1?tls=false", "migrate", "--print", "-o", "json")
	var ms []struct{ Component, Name, SQL string }
	if err := json.Unmarshal([]byte(r.stdout.String()), &ms); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(ms) != 1 || ms[0].Component != "checkpoints" || ms[0].Name != "projections" || !strings.Contains(ms[0].SQL, `"strata".projection_checkpoints`) {
		t.Errorf("migrate --print -o json with --esdb-url: %+v", ms)
	}
}
