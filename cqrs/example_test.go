package cqrs_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/memstore"
)

// The examples' domain: a bank account.

type account struct {
	Open    bool
	Balance int
}

func newAccount(string) *account { return &account{} }

func (a *account) Apply(event any) error {
	switch e := event.(type) {
	case AccountOpened:
		a.Open = true
	case MoneyDeposited:
		a.Balance += e.Amount
	default:
		return fmt.Errorf("account: unexpected event %T", event)
	}
	return nil
}

type AccountOpened struct{ AccountID, Owner string }

type MoneyDeposited struct {
	AccountID string
	Amount    int
}

// OpenAccount creates an account.
type OpenAccount struct{ AccountID, Owner string }

// Deposit carries an idempotency key, so a retried deposit counts once.
type Deposit struct {
	Key       string
	AccountID string
	Amount    int
}

func (d Deposit) CommandID() string { return d.Key }

func (d Deposit) Validate() error {
	return errors.Join(
		cqrs.Check(d.AccountID != "", "AccountID", "is required"),
		cqrs.Check(d.Amount > 0, "Amount", "must be positive"),
	)
}

var errAccountClosed = errors.New("account is closed")

var openAccount = cqrs.OnNew(
	func(c OpenAccount) string { return c.AccountID },
	func(_ context.Context, _ *account, c OpenAccount) ([]any, error) {
		return []any{AccountOpened(c)}, nil
	})

var deposit = cqrs.OnExisting(
	func(c Deposit) string { return c.AccountID },
	func(_ context.Context, a *account, c Deposit) ([]any, error) {
		if !a.Open {
			return nil, errAccountClosed
		}
		return []any{MoneyDeposited{AccountID: c.AccountID, Amount: c.Amount}}, nil
	})

// newAccounts wires the handlers to a bus on an in-memory store.
func newAccounts() (*cqrs.Bus, *es.Repository[*account]) {
	return newAccountsOn(memstore.New())
}

// newAccountsOn wires the handlers to a bus on store.
func newAccountsOn(store es.Store) (*cqrs.Bus, *es.Repository[*account]) {
	registry := es.NewRegistry()
	es.Register[AccountOpened](registry, "AccountOpened")
	es.Register[MoneyDeposited](registry, "MoneyDeposited")
	accounts := es.NewRepository(store, registry, newAccount, es.RepositoryConfig{StreamPrefix: "account-"})

	bus := cqrs.NewBus()
	cqrs.Handle(bus, cqrs.Aggregate(accounts, openAccount, cqrs.AggregateConfig{}))
	cqrs.Handle(bus, cqrs.Aggregate(accounts, deposit, cqrs.AggregateConfig{}))
	return bus, accounts
}

func Example() {
	bus, accounts := newAccounts()
	ctx := context.Background()

	res, err := bus.Dispatch(ctx, OpenAccount{AccountID: "7", Owner: "ann"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("opened %s at version %d, position %s\n", res.Stream, res.Version, res.Position)

	res, err = bus.Dispatch(ctx, Deposit{AccountID: "7", Amount: 50})
	if err != nil {
		panic(err)
	}
	fmt.Printf("deposited: %s at version %d, position %s\n", res.Stream, res.Version, res.Position)

	_, err = bus.Dispatch(ctx, Deposit{AccountID: "8", Amount: 50})
	fmt.Println(err, errors.Is(err, cqrs.ErrAggregateNotFound))

	root, err := accounts.Load(ctx, "7")
	if err != nil {
		panic(err)
	}
	fmt.Println("balance:", root.State.Balance)
	// Output:
	// opened account-7 at version 1, position 1:1
	// deposited: account-7 at version 2, position 2:2
	// cqrs: handle cqrs_test.Deposit: aggregate account-8 not found true
	// balance: 50
}

func ExampleIdentified() {
	bus, accounts := newAccounts()
	ctx := context.Background()
	if _, err := bus.Dispatch(ctx, OpenAccount{AccountID: "7", Owner: "ann"}); err != nil {
		panic(err)
	}

	// The client sends the same deposit twice, say because the first
	// response was lost; another deposit lands in between.
	cmd := Deposit{Key: "req-1", AccountID: "7", Amount: 50}
	first, err := bus.Dispatch(ctx, cmd)
	if err != nil {
		panic(err)
	}
	if _, err := bus.Dispatch(ctx, Deposit{Key: "req-2", AccountID: "7", Amount: 5}); err != nil {
		panic(err)
	}
	retry, err := bus.Dispatch(ctx, cmd)
	if err != nil {
		panic(err)
	}
	fmt.Printf("first: %+v\nretry: %+v\n", first, retry)

	root, err := accounts.Load(ctx, "7")
	if err != nil {
		panic(err)
	}
	fmt.Println("balance:", root.State.Balance)
	// Output:
	// first: {Stream:account-7 Version:2 Position:2:2}
	// retry: {Stream:account-7 Version:2 Position:2:2}
	// balance: 55
}

func ExampleValidationError() {
	bus, _ := newAccounts()

	_, err := bus.Dispatch(context.Background(), &Deposit{Amount: -5})
	fmt.Println(err)

	var invalid *cqrs.ValidationError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Printf("%s %s\n", f.Field, f.Message)
		}
	}
	fmt.Println(errors.Is(err, cqrs.ErrInvalidCommand))
	// Output:
	// cqrs: invalid command cqrs_test.Deposit: AccountID: is required; Amount: must be positive
	// AccountID is required
	// Amount must be positive
	// true
}

func ExampleContextFromMetadata() {
	bus, accounts := newAccounts()
	ctx := context.Background()
	if _, err := bus.Dispatch(ctx, OpenAccount{AccountID: "7", Owner: "ann"}); err != nil {
		panic(err)
	}

	// An HTTP handler names the request's correlation and adds its own
	// metadata.
	ctx = cqrs.WithCorrelationID(ctx, "checkout-42")
	ctx = cqrs.WithMetadata(ctx, es.Metadata{"user": "ann"})
	if _, err := bus.Dispatch(ctx, Deposit{Key: "req-1", AccountID: "7", Amount: 50}); err != nil {
		panic(err)
	}

	recs, err := accounts.Store().ReadStream(ctx, "account-7", es.ReadStreamOptions{From: 2})
	if err != nil {
		panic(err)
	}
	md := recs[0].Metadata
	for _, k := range []string{es.MetaCorrelationID, es.MetaCausationID, es.MetaCommandType, "user"} {
		fmt.Printf("%s=%s\n", k, md[k])
	}

	// A projection handling the event continues the correlation (and the
	// trace, when the command was traced).
	pctx := cqrs.ContextFromMetadata(context.Background(), md)
	fmt.Println(cqrs.CorrelationID(pctx))
	// Output:
	// correlation_id=checkout-42
	// causation_id=req-1
	// command_type=cqrs_test.Deposit
	// user=ann
	// checkout-42
}
