package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/process"
	"github.com/stratadev/strata/cqrs/process/pgprocess"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// The process manager of the processes tests: a shipment starts, asks a
// carrier for a pickup (a command that always fails, transiently), waits
// for a deadline, and finishes.

type shipmentStarted struct {
	ID     string
	Pickup bool
	Wait   bool
}
type shipmentFinished struct{ ID string }

type RequestPickup struct {
	process.ID
	Shipment string
}

type shipmentState struct{ N int }

type shipment struct{}

func (shipment) Name() string      { return "shipment" }
func (shipment) Handles() []string { return []string{"ShipmentStarted", "ShipmentFinished"} }
func (shipment) Correlate(ev projections.Event) (string, bool) {
	switch e := ev.Data.(type) {
	case shipmentStarted:
		return e.ID, true
	case shipmentFinished:
		return e.ID, true
	}
	return "", false
}

func (shipment) Decide(s shipmentState, in process.Input) (process.Decision[shipmentState], error) {
	d := process.Decision[shipmentState]{State: shipmentState{N: s.N + 1}}
	if ev, ok := in.(process.EventReceived); ok {
		switch e := ev.Event.Data.(type) {
		case shipmentStarted:
			if e.Pickup {
				d.Commands = []any{RequestPickup{Shipment: e.ID}}
			}
			if e.Wait {
				d.Deadlines = []process.Deadline{{Name: "pickup-window", After: time.Hour}}
			}
		case shipmentFinished:
			d.Done = true
		}
	}
	return d, nil
}

// processEnv leaves in its schema a shipment process with a stuck command
// (stuck-cmd), an overdue deadline (late), an instance whose state no
// longer decodes (broken) and a completed one (done).
func processEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	reg := es.NewRegistry()
	es.Register[shipmentStarted](reg, "ShipmentStarted")
	es.Register[shipmentFinished](reg, "ShipmentFinished")
	sixth := make(chan struct{})
	bus := cqrs.NewBus()
	var n int
	cqrs.Handle(bus, cqrs.Handler[RequestPickup](func(ctx context.Context, _ RequestPickup) (cqrs.Result, error) {
		// Dispatches are one at a time: the sixth starts after the fifth
		// failure is committed, and is held until the runner stops, which
		// rolls it back.
		if n++; n == 6 {
			close(sixth)
			<-ctx.Done()
			return cqrs.Result{}, ctx.Err()
		}
		return cqrs.Result{}, errors.New("carrier api: 503 service unavailable")
	}))
	cmds := &process.Commands{}
	process.RegisterCommand[RequestPickup](cmds)
	if err := pgprocess.Migrate(t.Context(), e.sink); err != nil {
		t.Fatal(err)
	}
	r := pgprocess.New(e.store, reg, e.sink, bus, process.Define(shipment{}), cmds, pgprocess.Config{
		Logger: quiet, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		Worker: projections.Config{PollInterval: 20 * time.Millisecond, Logger: quiet}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)

	appendSeen := func(typ string, data any) {
		t.Helper()
		b, _ := json.Marshal(data)
		res, err := e.store.Append(t.Context(), "shipment", es.Any, es.EventData{Type: typ, Data: b})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer wcancel()
		if err := projections.WaitFor(wctx, e.sink, pgprocess.ProjectionPrefix+"shipment", res.Position); err != nil {
			t.Fatalf("wait for the process to see %s: %v", typ, err)
		}
	}
	appendSeen("ShipmentStarted", shipmentStarted{ID: "done"})
	appendSeen("ShipmentFinished", shipmentFinished{ID: "done"})
	appendSeen("ShipmentStarted", shipmentStarted{ID: "late", Wait: true})
	appendSeen("ShipmentStarted", shipmentStarted{ID: "broken"})
	e.exec(t, `UPDATE {{schema}}.process_instances SET state = '{"N": "many"}' WHERE id = 'broken'`)
	appendSeen("ShipmentFinished", shipmentFinished{ID: "broken"})
	appendSeen("ShipmentStarted", shipmentStarted{ID: "stuck-cmd", Pickup: true})
	select {
	case <-sixth:
	case <-time.After(30 * time.Second):
		t.Fatal("the pickup was not tried six times within 30s")
	}
	stop()
	// Two minutes pass on the database's clock and no runner fires the
	// deadline.
	e.exec(t, `UPDATE {{schema}}.process_deadlines SET due_at = now() - interval '2 minutes' WHERE id = 'late'`)
	return e
}

// processes list and show name the stuck, failed and completed instances,
// with their errors, in a table and in JSON; bad names and IDs are usage
// errors that say what exists.
func TestProcesses(t *testing.T) {
	t.Parallel()
	e := processEnv(t)

	// Every process manager, with its counts.
	r := e.mustRun(t, opts{}, "processes", "list", "-o", "json")
	var sums []struct {
		Name  string
		Stats pgprocess.Stats
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &sums); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(sums) != 1 || sums[0].Name != "shipment" {
		t.Fatalf("processes list -o json = %+v; want shipment alone", sums)
	}
	if s := sums[0].Stats; s.Running != 2 || s.Completed != 1 || s.Failed != 1 || s.Stuck != 3 || s.OverdueDeadlines != 1 || s.RetryingCommands != 1 {
		t.Errorf("shipment stats = %+v; want 2 running, 1 completed, 1 failed, 3 stuck, 1 overdue deadline, 1 retrying command", s)
	}
	r = e.mustRun(t, opts{tty: true}, "processes", "list")
	r.check(t, 0, "NAME", "STUCK", "shipment")

	// The stuck instances, with why.
	r = e.mustRun(t, opts{}, "processes", "list", "shipment", "--status", "stuck", "-o", "json")
	var list []pgprocess.Instance
	if err := json.Unmarshal([]byte(r.stdout.String()), &list); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	stuck := map[string]string{}
	for _, in := range list {
		stuck[in.ID] = in.Stuck
	}
	for id, want := range map[string]string{
		"stuck-cmd": "carrier api: 503 service unavailable",
		"late":      "deadline pickup-window overdue since ",
		"broken":    "decode state",
	} {
		if !strings.Contains(stuck[id], want) {
			t.Errorf("processes list --status stuck: %s is stuck with %q; want %q in it", id, stuck[id], want)
		}
	}
	if len(list) != 3 {
		t.Errorf("processes list --status stuck listed %d instances; want 3: %v", len(list), stuck)
	}
	r = e.mustRun(t, opts{tty: true}, "processes", "list", "shipment")
	r.check(t, 0, "ID", "STATUS", "stuck-cmd", "late", "broken", "done", "completed", "failed",
		"failed 5 times: carrier api: 503", "deadline pickup-window overdue since", "decode state")
	r = e.mustRun(t, opts{tty: true}, "processes", "list", "--status", "completed")
	if out := r.stdout.String(); !strings.Contains(out, "done") || strings.Contains(out, "broken") {
		t.Errorf("processes list --status completed printed\n%s\nwant done and not broken", out)
	}

	// One instance in detail.
	r = e.mustRun(t, opts{tty: true}, "processes", "show", "shipment", "stuck-cmd")
	r.check(t, 0, "status:      running", "stuck:       command cli_test.RequestPickup failed 5 times",
		"shipment/stuck-cmd/1/0", "pending", "carrier api: 503 service unavailable")
	r = e.mustRun(t, opts{}, "processes", "show", "shipment", "stuck-cmd", "-o", "json")
	var in pgprocess.Instance
	if err := json.Unmarshal([]byte(r.stdout.String()), &in); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(in.Commands) != 1 || in.Commands[0].Attempts != 5 || in.Commands[0].LastError != "carrier api: 503 service unavailable" ||
		in.Commands[0].Status != pgprocess.CommandPending {
		t.Errorf("show -o json: commands %+v; want the pickup, pending, 5 attempts, the carrier's error", in.Commands)
	}
	r = e.mustRun(t, opts{tty: true}, "processes", "show", "shipment", "late")
	r.check(t, 0, "deadlines:", "pickup-window", "pending", "stuck:       deadline pickup-window overdue since")
	r = e.mustRun(t, opts{tty: true}, "processes", "show", "shipment", "broken")
	r.check(t, 0, "status:      failed", "decode state", `state:       {"N": "many"}`, "last event:  ShipmentFinished")
	r = e.mustRun(t, opts{tty: true}, "processes", "show", "shipment", "done")
	if out := r.stdout.String(); !strings.Contains(out, "status:      completed") || strings.Contains(out, "stuck:") {
		t.Errorf("show done printed\n%s\nwant completed, not stuck", out)
	}

	// Bad input.
	e.cli(t.Context(), opts{}, "processes", "list", "shipping").check(t, 2, `unknown process manager "shipping"`, "shipment")
	e.cli(t.Context(), opts{}, "processes", "show", "shipping", "x").check(t, 2, `unknown process manager "shipping"`, "shipment")
	e.cli(t.Context(), opts{}, "processes", "show", "shipment", "nope").check(t, 2, `no instance "nope"`, "processes list shipment")
	e.cli(t.Context(), opts{}, "processes", "list", "--status", "stalled").check(t, 2, `invalid --status "stalled": want running, completed, failed or stuck`)
	e.cli(t.Context(), opts{}, "processes", "list", "--limit", "-3").check(t, 2, `invalid --limit -3`)
	e.cli(t.Context(), opts{}, "processes", "show", "shipment").check(t, 2, "wants a process manager's name and an instance ID")
}

// Without the tables, the commands say to run migrate.
func TestProcessesWithoutTables(t *testing.T) {
	t.Parallel()
	e := newBareEnv(t)
	e.cli(t.Context(), opts{}, "processes", "list").check(t, 1, "has no process manager tables", "strata migrate")
	e.cli(t.Context(), opts{}, "processes", "show", "a", "b").check(t, 1, "has no process manager tables", "strata migrate")
	e.mustRun(t, opts{}, "migrate")
	e.mustRun(t, opts{tty: true}, "processes", "list").check(t, 0, "no process manager has rows in schema "+e.schema)
}
