package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
)

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	for _, args := range [][]string{
		{"bogus"},
		{"projections", "bogus"},
		{"migrate", "--no-such-flag"},
		{"migrate", "extra"},
		{"streams", "read"},
		{"streams", "list", "--limit", "x"},
		{"projections", "status", "a", "b"},
		{"projections", "list", "--output", "yaml"},
		{"events", "tail", "--from", "yesterday"},
		{"projections", "reset", "order_view", "--to", "x"},
		{"projections", "dead-letters", "skip", "order_view"},
		{"projections", "dead-letters", "skip", "order_view", "not-a-uuid"},
	} {
		r := e.cli(t.Context(), opts{}, args...)
		r.check(t, cli.ExitUsage, "strata: ", "--help' for usage.")
		if lines := strings.Count(r.stderr.String(), "\n"); lines != 2 {
			t.Errorf("%v: %d lines on stderr, want the error and the hint:\n%s", args, lines, r.stderr)
		}
	}
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	e := &env{}
	r := e.cli(t.Context(), opts{noDB: true}, "--database-url", "postgres://bob:s3cret@127.0.0.1:1/app", "projections", "list")
	r.check(t, cli.ExitFailed, "strata: cannot connect to postgres://bob@127.0.0.1:1/app: connection refused\n")
	if strings.Contains(r.stderr.String(), "s3cret") {
		t.Errorf("the password is in the error: %s", r.stderr)
	}
	if n := strings.Count(r.stderr.String(), "\n"); n != 1 {
		t.Errorf("%d lines on stderr, want 1", n)
	}

	// --verbose adds pgx's detail, still without the password.
	r = e.cli(t.Context(), opts{noDB: true}, "--database-url", "postgres://bob:s3cret@127.0.0.1:1/app", "-v", "migrate")
	r.check(t, cli.ExitFailed, "connection refused", "dial tcp 127.0.0.1:1")
	if strings.Contains(r.stderr.String(), "s3cret") {
		t.Errorf("the password is in the error: %s", r.stderr)
	}

	r = e.cli(t.Context(), opts{noDB: true}, "migrate")
	r.check(t, cli.ExitUsage, "no database: set --database-url or STRATA_DATABASE_URL")
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	r := e.cli(t.Context(), opts{noDB: true, env: map[string]string{
		"STRATA_DATABASE_URL": e.url, "STRATA_SCHEMA": e.schema,
	}}, "migrate")
	r.check(t, 0, "events: applied 001_events in schema "+e.schema)

	// A flag wins over the environment.
	r = e.cli(t.Context(), opts{noDB: true, env: map[string]string{
		"STRATA_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "STRATA_SCHEMA": "elsewhere",
	}}, "--database-url", e.url, "--schema", e.schema, "migrate")
	r.check(t, 0, "is up to date")
}

// TestHelp checks that every command has an example, and that help and
// completion work without a database.
func TestHelp(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Name() != "completion" && c.Parent() == nil || c.Parent() != nil && c.Parent().Name() != "completion" && c.Name() != "help" && c.Name() != "completion" {
			if c.Example == "" {
				t.Errorf("%s has no example", c.CommandPath())
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(cli.New(cli.Config{}))

	e := &env{}
	r := e.cli(t.Context(), opts{noDB: true}, "projections", "rebuild", "--help")
	r.check(t, 0, "Usage:", "strata projections rebuild order_view", "--wait")
	r = e.cli(t.Context(), opts{noDB: true}, "completion", "bash")
	r.check(t, 0, "bash completion")
	r = e.cli(t.Context(), opts{noDB: true, projections: []cli.Projection{{Projection: &orderView{}}}},
		"__complete", "projections", "rebuild", "")
	r.check(t, 0, "order_view")
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	r := e.mustRun(t, opts{}, "migrate")
	want := "events: applied 001_events in schema " + e.schema + "\n" +
		"events: applied 002_json in schema " + e.schema + "\n" +
		"events: schema " + e.schema + " is now at version 2\n" +
		"checkpoints: applied 001_projections in schema " + e.schema + "\n" +
		"checkpoints: schema " + e.schema + " is now at version 1\n" +
		"processes: the process manager tables are in schema " + e.schema + "\n"
	if got := r.stdout.String(); got != want {
		t.Errorf("first migrate printed\n%s\nwant\n%s", got, want)
	}
	r = e.mustRun(t, opts{}, "migrate", "-o", "json")
	var out struct {
		Migrations []struct {
			Component string
			Applied   []string
			Version   int
		}
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &out); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(out.Migrations) != 3 || len(out.Migrations[0].Applied) != 0 || out.Migrations[0].Version != 2 || out.Migrations[1].Version != 1 ||
		out.Migrations[2].Component != "processes" {
		t.Errorf("second migrate: %+v", out)
	}
}
