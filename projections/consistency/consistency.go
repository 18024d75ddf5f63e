// Package consistency gives read APIs read-your-writes over HTTP. A write
// answers with the position its command wrote, as a consistency token
// ([SetToken]); a read that carries the token, in the X-Consistency-Token
// header or the after query parameter, waits, bounded, until the
// projections it reads from have reached it ([Waiter.Wait]), and answers
// X-Stale: true when they had not by then:
//
//	waiter := consistency.New(sink, consistency.Config{})     // sink keeps the checkpoints
//
//	// in a write handler
//	consistency.SetToken(w.Header(), res.Position)
//
//	// in a read handler
//	res, err := waiter.Wait(w, r, "order_view")
//	if errors.Is(err, consistency.ErrInvalidToken) {
//		http.Error(w, err.Error(), http.StatusBadRequest)
//		return
//	} else if err != nil { ... }
//	// read the model; X-Stale is set, res.Stale says the same
//
// The token is the text of an [es.Position] ("commit:prepare"), so it can
// travel in a header or a URL as it is.
package consistency

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// The names of the token and of the staleness flag on the wire.
const (
	// Header carries the token of a write's answer, and of a read.
	Header = "X-Consistency-Token"
	// QueryParam carries the token of a read, as ?after=123:456.
	QueryParam = "after"
	// StaleHeader is "true" on a read that did not wait until its token was
	// reached, and "false" otherwise.
	StaleHeader = "X-Stale"
)

// WaitDefault bounds the wait of a read by default.
const WaitDefault = 2 * time.Second

// ErrInvalidToken means a request's consistency token could not be read.
// The details are in a [*TokenError]; a read API answers it with 400.
var ErrInvalidToken = errors.New("consistency: invalid consistency token")

// TokenError describes a consistency token that could not be read: one
// that is not a position, or a header and a query parameter that disagree.
type TokenError struct {
	// Header and Query are the tokens as sent; either may be empty.
	Header, Query string
	// Reason says what is wrong, for the client.
	Reason string
}

func (e *TokenError) Error() string { return "consistency: read consistency token: " + e.Reason }

// Unwrap returns ErrInvalidToken.
func (e *TokenError) Unwrap() error { return ErrInvalidToken }

// Format returns the token of pos, which [Token] reads back.
func Format(pos es.Position) string { return pos.String() }

// SetToken sets the X-Consistency-Token header of a write's answer to the
// token of pos, and returns the token, for the body.
func SetToken(h http.Header, pos es.Position) string {
	tok := Format(pos)
	h.Set(Header, tok)
	return tok
}

// Token returns the consistency token of r, from the X-Consistency-Token
// header or the after query parameter, or the zero position when r has
// none. Both with different values, or a token that is not a position,
// return a [*TokenError].
func Token(r *http.Request) (es.Position, error) {
	h, q := r.Header.Get(Header), r.URL.Query().Get(QueryParam)
	if h != "" && q != "" && h != q {
		return es.Position{}, &TokenError{Header: h, Query: q,
			Reason: "the " + Header + " header and ?" + QueryParam + "= name different positions; send one"}
	}
	tok := cmp.Or(h, q)
	if tok == "" {
		return es.Position{}, nil
	}
	pos, err := es.ParsePosition(tok)
	if err != nil {
		return es.Position{}, &TokenError{Header: h, Query: q,
			Reason: "the consistency token must be a position like 123:456, as the write API returned it"}
	}
	return pos, nil
}

// Config configures a [Waiter]. The zero value works.
type Config struct {
	// Wait bounds how long a read waits for its token. Defaults to
	// WaitDefault (2s).
	Wait time.Duration
}

// Validate reports a negative Wait.
func (c Config) Validate() error {
	if c.Wait < 0 {
		return fmt.Errorf("consistency: Config.Wait is %s; want 0 (the default) or more", c.Wait)
	}
	return nil
}

// Waiter makes reads wait for their consistency tokens. It is safe for
// concurrent use.
type Waiter struct {
	cps  projections.Checkpoints
	wait time.Duration
}

// New returns a waiter that reads checkpoints from cps; a
// [projections.CheckpointWatcher] (pgsink's Sink is one) wakes it as soon as
// a checkpoint moves. It panics if cps is nil or cfg is invalid: those are
// programming errors.
func New(cps projections.Checkpoints, cfg Config) *Waiter {
	if cps == nil {
		panic("consistency: New: nil checkpoints")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Waiter{cps: cps, wait: cmp.Or(cfg.Wait, WaitDefault)}
}

// Result is what [Waiter.Wait] found.
type Result struct {
	// Position is the request's token; zero when it had none.
	Position es.Position
	// Stale reports that the read does not wait until its token was
	// reached: the bound expired, or a projection is stalled.
	Stale bool
	// Behind names the projection that had not reached Position, when
	// Stale.
	Behind string
	// Reason is, when Stale, the [*projections.BehindError] or
	// [*projections.StalledError] that made it so.
	Reason error
}

// Wait reads r's consistency token and waits, up to Config.Wait, until
// every one of names has reached it. It sets the X-Stale header of w to
// "true" when one had not by then (or is stalled), and to "false" when all
// had or r has no token; the read then answers with what the read models
// have. A token that cannot be read returns a [*TokenError] (answer 400)
// and sets no header. Wait also returns an error when r's context ends
// (the client went away) or a checkpoint cannot be read.
func (w *Waiter) Wait(rw http.ResponseWriter, r *http.Request, names ...string) (Result, error) {
	pos, err := Token(r)
	if err != nil {
		return Result{}, err
	}
	res := Result{Position: pos}
	if !pos.IsZero() {
		ctx := r.Context()
		wctx, cancel := context.WithTimeout(ctx, w.wait)
		err := projections.WaitForAll(wctx, w.cps, names, pos)
		cancel()
		var (
			behind  *projections.BehindError
			stalled *projections.StalledError
		)
		switch {
		case err == nil:
		case errors.As(err, &behind) && ctx.Err() == nil:
			res.Stale, res.Behind, res.Reason = true, behind.Projection, err
		case errors.As(err, &stalled):
			res.Stale, res.Behind, res.Reason = true, stalled.Projection, err
		default:
			return Result{}, fmt.Errorf("consistency: wait for %s: %w", pos, err)
		}
	}
	rw.Header().Set(StaleHeader, strconv.FormatBool(res.Stale))
	return res, nil
}
