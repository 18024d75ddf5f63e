package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	quickstart "github.com/stratadev/strata/examples/quickstart"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// want is what both runs print after their first line.
const want = `deposited 600 to ann: account-ann is at version 1
deposited 50 to bob: account-bob is at version 1
deposit 500 to ann refused: an account holds at most 1000
balances: ann 600, bob 50
`

func TestInMemory(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := quickstart.InMemory(context.Background(), &out); err != nil {
		t.Fatalf("InMemory: %v", err)
	}
	if got := out.String(); got != "in memory:\n"+want {
		t.Errorf("InMemory printed:\n%s\nwant:\n%s", got, "in memory:\n"+want)
	}
}

func TestOnPostgres(t *testing.T) {
	t.Parallel()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") == "true" || os.Getenv("STRATA_REQUIRE_SERVERS") == "1" {
			t.Fatal("TEST_DATABASE_URL is not set, and servers are required")
		}
		t.Skip("TEST_DATABASE_URL is not set: skipping the PostgreSQL run")
	}
	ctx := context.Background()
	schema := freshSchema(t, ctx, url)

	// Twice on the same schema: the second start migrates nothing, and the
	// events of the first run count against the limit.
	var out strings.Builder
	if err := quickstart.OnPostgres(ctx, &out, url, schema); err != nil {
		t.Fatalf("OnPostgres: %v", err)
	}
	if got := out.String(); got != "on PostgreSQL:\n"+want {
		t.Errorf("OnPostgres printed:\n%s\nwant:\n%s", got, "on PostgreSQL:\n"+want)
	}
	out.Reset()
	if err := quickstart.OnPostgres(ctx, &out, url, schema); err != nil {
		t.Fatalf("OnPostgres, second start: %v", err)
	}
	again := `on PostgreSQL:
deposit 600 to ann refused: an account holds at most 1000
deposited 50 to bob: account-bob is at version 2
deposit 500 to ann refused: an account holds at most 1000
balances: ann 600, bob 100
`
	if got := out.String(); got != again {
		t.Errorf("OnPostgres, second start, printed:\n%s\nwant:\n%s", got, again)
	}
}

// freshSchema returns the name of a schema no other test uses, and drops
// it when the test ends.
func freshSchema(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "quickstart_" + hex.EncodeToString(b)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		pool.Close()
	})
	return schema
}
