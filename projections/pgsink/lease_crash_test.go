package pgsink_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// Environment of the lease holder process that TestLeasesOfAKilledProcess
// starts: the schema of its sink, and its pool's application name.
const (
	envCrashSchema = "PGSINK_TEST_CRASH_SCHEMA"
	envCrashApp    = "PGSINK_TEST_CRASH_APP"
)

var crashNames = []string{"a", "b", "c"}

// When a process that holds leases is killed (SIGKILL: nothing of it runs
// again), PostgreSQL ends its lease connection and gives every lease on it
// up; standbys in another process take them all and go on.
func TestLeasesOfAKilledProcess(t *testing.T) {
	if schema := os.Getenv(envCrashSchema); schema != "" {
		holdLeasesUntilKilled(t, schema, os.Getenv(envCrashApp))
		return
	}
	t.Parallel()
	e := newCounterEnv(t)
	app := fmt.Sprintf("strata-test-crash-%d", time.Now().UnixNano())
	leaseApp := app + " leases"

	cmd := exec.Command(os.Args[0], "-test.run=^TestLeasesOfAKilledProcess$", "-test.count=1",
		"-test.timeout=2m") // should this process die before it kills the holder
	cmd.Env = append(os.Environ(), envCrashSchema+"="+e.sink.Schema(), envCrashApp+"="+app)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	ready := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if line := s.Text(); strings.HasPrefix(line, "holding ") {
				ready <- line
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatal("the lease holder process ended before it held its leases")
		}
		t.Logf("lease holder process: %s", line)
	case <-time.After(30 * time.Second):
		t.Fatal("the lease holder process did not hold its leases within 30s")
	}
	if got := pgtest.Sessions(t, leaseApp); got != 1 {
		t.Fatalf("%d sessions of %s; want the holder's one lease connection", got, leaseApp)
	}

	pos := e.appendOne(t, "s", "ItemAdded", `{"sku":"a","qty":1}`).Position
	log := newLeaseLog()
	cfg := projections.Config{Logger: slog.New(log), PollInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var dones []<-chan error
	for _, name := range crashNames {
		dones = append(dones, start(ctx, pgsink.NewWorker(e.store, e.reg, e.sink, counter{name: name}, cfg)))
	}
	log.waitEach(t, crashNames, leaseCounts{standby: 1})

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	log.waitEach(t, crashNames, leaseCounts{taken: 1})
	for _, name := range crashNames {
		e.waitFor(t, name, pos)
	}
	cancel()
	for _, d := range dones {
		if err := waitDone(t, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range crashNames {
		if once, more := e.counts(t, name); once != 1 || more != 0 {
			t.Errorf("%s applied %d events once and %d more than once; want 1 and 0", name, once, more)
		}
	}
}

// holdLeasesUntilKilled is the lease holder process: it takes the leases
// of crashNames on a sink on schema, says so on standard output and waits
// to be killed.
func holdLeasesUntilKilled(t *testing.T, schema, app string) {
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	for _, name := range crashNames {
		mustLock(t, sink, name)
	}
	fmt.Printf("holding %s as pid %d\n", strings.Join(crashNames, ", "), holder(t, sink, crashNames[0]))
	<-t.Context().Done() // killed first, or at -test.timeout
}
