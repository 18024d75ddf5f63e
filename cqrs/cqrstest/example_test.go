package cqrstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/cqrs/cqrstest"
	"github.com/stratadev/strata/es"
)

// The examples' domain: a bank account that holds at most 100.

type account struct{ Balance int }

func (a *account) Apply(event any) error {
	switch e := event.(type) {
	case AccountOpened:
	case Deposited:
		a.Balance += e.Amount
	default:
		return fmt.Errorf("account: unexpected event %T", event)
	}
	return nil
}

type (
	AccountOpened struct{ ID string }
	Deposited     struct {
		ID     string
		Amount int
	}
	OpenAccount struct{ ID string }
	Deposit     struct {
		ID     string
		Amount int
	}
)

var errLimit = errors.New("an account holds at most 100")

var openAccount = cqrs.OnNew(
	func(c OpenAccount) string { return c.ID },
	func(_ context.Context, _ *account, c OpenAccount) ([]any, error) {
		return []any{AccountOpened(c)}, nil
	})

var deposit = cqrs.OnExisting(
	func(c Deposit) string { return c.ID },
	func(_ context.Context, a *account, c Deposit) ([]any, error) {
		if a.Balance+c.Amount > 100 {
			return nil, errLimit
		}
		return []any{Deposited(c)}, nil
	})

func accountEvents() *es.Registry {
	r := es.NewRegistry()
	es.Register[AccountOpened](r, "AccountOpened")
	es.Register[Deposited](r, "Deposited")
	return r
}

// In a test, t is the test's *testing.T. Here, printT prints what would fail
// the test.
func ExampleFor() {
	inTest(func(t testing.TB) {
		cqrstest.For(t, accountEvents(), func(string) *account { return &account{} }, deposit).
			Given(AccountOpened{ID: "7"}, Deposited{ID: "7", Amount: 60}).
			When(Deposit{ID: "7", Amount: 50}).
			ThenError(errLimit)
	})
	// Output:
	// passed
}

// A sequence dispatches its commands one after another on the same store;
// each step is checked on its own, and ThenAll checks them together.
func ExampleNewSequence() {
	inTest(func(t testing.TB) {
		cqrstest.NewSequence(t, accountEvents(), func(string) *account { return &account{} },
			cqrstest.Decides(openAccount), cqrstest.Decides(deposit)).
			When(OpenAccount{ID: "7"}).Then(AccountOpened{ID: "7"}).
			When(Deposit{ID: "7", Amount: 60}).Then(Deposited{ID: "7", Amount: 60}).
			When(Deposit{ID: "7", Amount: 50}).ThenError(errLimit).
			ThenAll(AccountOpened{ID: "7"}, Deposited{ID: "7", Amount: 60})
	})

	// A failing step names itself and lists the commands that led to it.
	inTest(func(t testing.TB) {
		cqrstest.NewSequence(t, accountEvents(), func(string) *account { return &account{} },
			cqrstest.Decides(openAccount), cqrstest.Decides(deposit)).
			When(OpenAccount{ID: "7"}).Then(AccountOpened{ID: "7"}).
			When(Deposit{ID: "7", Amount: 60}).Then(Deposited{ID: "7", Amount: 50})
	})
	// Output:
	// passed
	// cqrstest: step 2, cqrstest_test.Deposit: events differ
	// given: (no events)
	// when:
	//     1. cqrstest_test.OpenAccount {"ID":"7"}
	//     2. cqrstest_test.Deposit {"ID":"7","Amount":60}
	// want:
	//     [0] Deposited {"ID":"7","Amount":50}
	// got:
	//     [0] Deposited {"ID":"7","Amount":60}
}

// printT stands in for the *testing.T of a test: it prints failures.
type printT struct {
	testing.TB
	failed bool
}

func (*printT) Helper() {}

func (p *printT) Errorf(format string, args ...any) {
	p.failed = true
	fmt.Printf(format+"\n", args...)
}

func (p *printT) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	runtime.Goexit()
}

// inTest runs test as a test would, and prints "passed" if nothing failed.
func inTest(test func(t testing.TB)) {
	p := &printT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(p)
	}()
	<-done
	if !p.failed {
		fmt.Println("passed")
	}
}
