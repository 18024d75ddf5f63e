// Command quickstart is the smallest complete strata application: one
// aggregate (a bank account), one command (Deposit), and one projection
// (the balance of every account, as a read model).
//
// It first runs everything in memory (memstore and memsink), with no server.
// When DATABASE_URL names a PostgreSQL database, it then runs the same wiring
// on PostgreSQL (pgstore and pgsink), in the schema "quickstart":
//
//	go run ./examples/quickstart
//	DATABASE_URL=postgres://me@localhost:5432/app go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/memsink"
	"github.com/stratadev/strata/projections/pgsink"
)

// --- The write side: an event, the aggregate it changes, and a command. ---

// MoneyDeposited is an event: something that happened. Events are plain
// structs, stored as JSON under the name they are registered with.
type MoneyDeposited struct {
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

// account is the aggregate: the state a decision needs, rebuilt by applying
// the account's events in order.
type account struct{ balance int }

func (a *account) Apply(event any) error {
	if e, ok := event.(MoneyDeposited); ok {
		a.balance += e.Amount
	}
	return nil
}

// Deposit is a command: a request that may be refused.
type Deposit struct {
	Account string
	Amount  int
}

// Validate refuses a bad command before anything is loaded or written.
func (d Deposit) Validate() error {
	return errors.Join(
		cqrs.Check(d.Account != "", "Account", "is required"),
		cqrs.Check(d.Amount > 0, "Amount", "must be positive"),
	)
}

// errLimit is the decider's refusal: an account holds at most 1000.
var errLimit = errors.New("an account holds at most 1000")

// deposit decides which events a Deposit produces. OnAny works on a new or an
// existing account; the account's stream is "account-" + its ID.
var deposit = cqrs.OnAny(
	func(c Deposit) string { return c.Account },
	func(_ context.Context, a *account, c Deposit) ([]any, error) {
		if a.balance+c.Amount > 1000 {
			return nil, errLimit
		}
		// A command and its event are separate types, even with the same fields.
		return []any{MoneyDeposited{Account: c.Account, Amount: c.Amount}}, nil //nolint:staticcheck // spelled out on purpose
	})

// --- The read side: one projection, the balance of every account. ---

// balances keeps the balance of every account in memory (memsink).
type balances struct{}

func (balances) Name() string      { return "balances" }
func (balances) Handles() []string { return []string{"MoneyDeposited"} }

func (balances) HandleBatch(_ context.Context, tx *memsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(MoneyDeposited)
		old, _ := tx.Get("balances", e.Account)
		balance, _ := old.(int)
		tx.Put("balances", e.Account, balance+e.Amount)
	}
	return nil
}

// pgBalances is the same projection on PostgreSQL (pgsink): a table of
// (account, balance). Its rows and its checkpoint commit in one transaction.
type pgBalances struct{}

func (pgBalances) Name() string      { return "balances" }
func (pgBalances) Handles() []string { return []string{"MoneyDeposited"} }
func (pgBalances) Tables() []string  { return []string{"balances"} }

// Setup creates the table; pgsink's EnsureTables calls it once.
func (pgBalances) Setup(ctx context.Context, tx *pgsink.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("balances").Sanitize()+
		` (account text PRIMARY KEY, balance bigint NOT NULL)`)
	return err
}

func (pgBalances) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
	for _, ev := range events {
		e := ev.Data.(MoneyDeposited)
		_, err := tx.Exec(ctx, `INSERT INTO `+tx.Table("balances").Sanitize()+` AS b (account, balance)
			VALUES ($1, $2) ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance`,
			e.Account, e.Amount)
		if err != nil {
			return err
		}
	}
	return nil
}

// --- Wiring: the same steps on either store. ---

// newBus registers the events and returns a bus that sends Deposit to its
// decider, on accounts kept in store.
func newBus(store es.Store) (*cqrs.Bus, *es.Registry) {
	registry := es.NewRegistry()
	es.Register[MoneyDeposited](registry, "MoneyDeposited")
	accounts := es.NewRepository(store, registry, func(string) *account { return &account{} },
		es.RepositoryConfig{StreamPrefix: "account-"})
	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(accounts, deposit, cqrs.AggregateConfig{}))
	return bus, registry
}

// depositAndWait runs the projection's worker and dispatches three deposits, the
// last of which is refused. After each, it waits until the projection has
// applied the deposit (read-your-writes), so the read model shows it.
func depositAndWait(ctx context.Context, out io.Writer, bus *cqrs.Bus, worker projections.Runnable) error {
	ctx, stop := context.WithCancel(ctx)
	runner := projections.NewRunner(projections.RunnerConfig{Logger: quiet})
	runner.Add(worker)
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	defer func() { // stop the worker before returning
		stop()
		if err := <-done; err != nil {
			fmt.Fprintln(out, "worker:", err)
		}
	}()

	for _, d := range []Deposit{{"ann", 600}, {"bob", 50}, {"ann", 500}} {
		res, err := bus.Dispatch(ctx, d)
		var refused *cqrs.RejectedError
		if errors.As(err, &refused) {
			fmt.Fprintf(out, "deposit %d to %s refused: %v\n", d.Amount, d.Account, refused.Err)
			continue
		} else if err != nil {
			return err
		}
		fmt.Fprintf(out, "deposited %d to %s: %s is at version %d\n", d.Amount, d.Account, res.Stream, res.Version)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second) // always bound a wait
		err = projections.WaitFor(wctx, worker.Checkpoints(), worker.Name(), res.Position)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// InMemory runs the application on memstore and memsink.
func InMemory(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, "in memory:")
	store, sink := memstore.New(), memsink.New()
	bus, registry := newBus(store)
	worker := projections.NewWorker(store, registry, sink, balances{}, projections.Config{Logger: quiet})
	if err := depositAndWait(ctx, out, bus, worker); err != nil {
		return err
	}
	rows := sink.Rows("balances")
	fmt.Fprintf(out, "balances: ann %d, bob %d\n", rows["ann"], rows["bob"])
	return nil
}

// OnPostgres runs the same application on PostgreSQL, in schema: pgstore
// keeps the events, pgsink the read model and the projection's checkpoint.
func OnPostgres(ctx context.Context, out io.Writer, databaseURL, schema string) error {
	fmt.Fprintln(out, "on PostgreSQL:")
	pool, err := pgxpool.New(ctx, databaseURL) // the application owns the pool
	if err != nil {
		return err
	}
	defer pool.Close()
	store := pgstore.New(pool, pgstore.Config{Schema: schema, Logger: quiet})
	sink := pgsink.New(pool, pgsink.Config{Schema: schema, Logger: quiet})
	// Safe at every start: each creates only what is missing.
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := sink.Migrate(ctx); err != nil {
		return err
	}
	if _, err := sink.EnsureTables(ctx, pgBalances{}); err != nil {
		return err
	}
	bus, registry := newBus(store)
	worker := projections.NewWorker(store, registry, sink, pgBalances{}, projections.Config{Logger: quiet})
	if err := depositAndWait(ctx, out, bus, worker); err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT account, balance FROM `+pgx.Identifier{schema, "balances"}.Sanitize()+` ORDER BY account`)
	if err != nil {
		return err
	}
	balance := map[string]int{}
	var account string
	var amount int
	_, err = pgx.ForEachRow(rows, []any{&account, &amount}, func() error {
		balance[account] = amount
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "balances: ann %d, bob %d\n", balance["ann"], balance["bob"])
	return nil
}

// quiet drops the library's logs, so that the output shows what happened.
var quiet = slog.New(slog.DiscardHandler)

func main() {
	ctx := context.Background()
	if err := InMemory(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		fmt.Println("set DATABASE_URL to run the same on PostgreSQL")
		return
	}
	if err := OnPostgres(ctx, os.Stdout, url, "quickstart"); err != nil {
		log.Fatal(err)
	}
}
