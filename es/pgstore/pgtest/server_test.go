package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/stratadev/strata/es/pgstore/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStop(t *testing.T) {
	if _, err := pgtest.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.Dir()
	conn, err := pgconn.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	res, err := conn.Exec(ctx, "SHOW fsync").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res[0].Rows[0][0]); got != "off" {
		t.Errorf("fsync = %q, want off", got)
	}
	conn.Close(ctx)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind (stat: %v)", dir, err)
	}
	if _, err := pgconn.Connect(ctx, srv.URL()); err == nil {
		t.Error("server still accepts connections after Stop")
	}
}

func TestXactEpoch(t *testing.T) {
	t.Parallel()
	if _, err := pgtest.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.ServerConfig{XactEpoch: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := pgconn.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "SELECT pg_current_xact_id()::text::numeric >= 7 * 4294967296").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res[0].Rows[0][0]); got != "t" {
		t.Errorf("pg_current_xact_id() >= 7<<32 is %q, want t", got)
	}
}
