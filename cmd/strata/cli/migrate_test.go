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
		"checkpoints: schema " + e.schema + " is up to date (version 1)\n" +
		"processes: the process manager tables are in schema " + e.schema + "\n"
	if got := r.stdout.String(); got != want {
		t.Errorf("migrate after the printed SQL printed\n%s\nwant\n%s", got, want)
	}

	var tables int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename LIKE 'process\_%'`,
		e.schema).Scan(&tables); err != nil || tables != 4 {
		t.Errorf("process manager tables after the printed SQL: %d (%v); want 4", tables, err)
	}

	// With the events in EventStoreDB, only the checkpoints and the
	// process managers' tables.
	r = e.mustRun(t, opts{noDB: true}, "--esdb-url", "esdb://127.0.0.1:1?tls=false", "migrate", "--print", "-o", "json")
	var ms []struct{ Component, Name, SQL string }
	if err := json.Unmarshal([]byte(r.stdout.String()), &ms); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(ms) != 2 || ms[0].Component != "checkpoints" || ms[0].Name != "projections" || !strings.Contains(ms[0].SQL, `"strata".projection_checkpoints`) ||
		ms[1].Component != "processes" || !strings.Contains(ms[1].SQL, `"strata"."process_outbox"`) {
		t.Errorf("migrate --print -o json with --esdb-url: %+v", ms)
	}
}
