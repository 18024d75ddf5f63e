package kafkasink_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections"
)

const (
	envCrashSchema = "KAFKASINK_TEST_CRASH_SCHEMA"
	envCrashTopic  = "KAFKASINK_TEST_CRASH_TOPIC"
	envCrashName   = "KAFKASINK_TEST_CRASH_NAME"
	crashReady     = "kafkasink crash child: running"
	crashKills     = 20
)

// A worker killed with SIGKILL at random moments, many times, while
// events are appended to several streams, and started again each time:
// a read_committed consumer sees every event of the log exactly once, in
// stream order per key.
func TestKilledWorker(t *testing.T) {
	if schema := os.Getenv(envCrashSchema); schema != "" {
		runUntilKilled(t, schema, os.Getenv(envCrashTopic), os.Getenv(envCrashName))
		return
	}
	t.Parallel()
	e := newEnv(t)

	stopAppend := make(chan struct{})
	appended := make(chan es.Position, 1)
	go func() {
		var head es.Position
		tick := time.NewTicker(4 * time.Millisecond) // the load, not a wait
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopAppend:
				appended <- head
				return
			case <-tick.C:
			}
			res, err := e.store.Append(t.Context(), fmt.Sprintf("order-%d", i%7), es.Any,
				es.EventData{Type: "OrderPlaced", Data: fmt.Appendf(nil, `{"order":"order-%d","seq":%d}`, i%7, i)})
			if err != nil {
				t.Error(err)
				appended <- head
				return
			}
			head = res.Position
		}
	}()

	for kill := range crashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWorker$", "-test.count=1", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), envCrashSchema+"="+e.schema, envCrashTopic+"="+e.proj.topic, envCrashName+"="+e.proj.name)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			s := bufio.NewScanner(out)
			signalled := false
			for s.Scan() {
				if !signalled && strings.HasPrefix(s.Text(), crashReady) {
					signalled = true
					ready <- true
				}
			}
			if !signalled {
				ready <- false
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Wait()
				t.Fatalf("kill %d: the worker process ended before it ran", kill)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: the worker process did not run within 30s", kill)
		}
		// A random moment of its run: starting, publishing, committing.
		<-time.After(time.Duration(rand.IntN(1500)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}
	close(stopAppend)
	head := <-appended
	cp, err := e.pg.Checkpoint(t.Context(), e.proj.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d kills the keeper's checkpoint is at %s; head %s", crashKills, cp.Position, head)

	e.run(t, e.sink, projections.Config{BatchSize: 20})
	e.waitFor(t, head)
	log := e.log(t, head)
	msgs := readAll(t, e.url, e.proj.topic)
	t.Logf("%d events, %d messages", len(log), len(msgs))
	checkExactlyOnce(t, log, msgs)
}

// runUntilKilled is the child: it runs the projection's worker until the
// parent kills it.
func runUntilKilled(t *testing.T, schema, topic, name string) {
	pool, err := pgxpool.New(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := env{url: os.Getenv("TEST_KAFKA_URL"), pool: pool, schema: schema, reg: newRegistry(),
		proj: orderEvents{name: name, topic: topic}}
	e.cfg = testConfig(e.url, topic)
	e.open(t)
	stop, done := e.run(t, e.sink, projections.Config{BatchSize: 20})
	defer stop()
	fmt.Println(crashReady)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
