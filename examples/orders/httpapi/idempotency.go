package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/stratadev/strata/cqrs"
)

// MaxIdempotencyKeyLength bounds the Idempotency-Key header.
const MaxIdempotencyKeyLength = 200

// Keys remembers which request each Idempotency-Key was first used for,
// and its answer.
type Keys interface {
	// Claim binds key to fingerprint unless key is bound already, and
	// returns the fingerprint key is bound to (fingerprint itself, or that
	// of the request that used key first) and the answer saved for key, if
	// any.
	Claim(ctx context.Context, key, fingerprint string) (bound string, saved *Accepted, err error)
	// Save stores the answer to the request that key is bound to.
	Save(ctx context.Context, key string, a Accepted) error
}

// errKeyReused is the answer to a request whose Idempotency-Key an earlier
// request with other content used.
var errKeyReused = &apiError{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused",
	msg: "this Idempotency-Key was first used for a different request (another body, order, product or endpoint); " +
		"send a retry exactly as the first request, and a new request with a new key"}

// isKeyReused reports whether err refuses a command ID that an earlier
// command with other content used: the one place that maps such refusals
// to errKeyReused's response.
func isKeyReused(err error) bool {
	return errors.Is(err, errKeyReused) || errors.Is(err, cqrs.ErrCommandIDReused)
}

// idSpace is the UUID namespace of IDs derived from idempotency keys.
var idSpace = uuid.MustParse("5f0b7c55-2d1c-4c47-9d0e-5b0c8f6f8a41")

// newID returns the ID the server chooses for a new product or order: a
// new UUIDv7, or, for a request with an Idempotency-Key, a UUIDv5 of the
// kind and the key, so that a retry names the same product or order and
// the command side recognizes it.
func newID(r *http.Request, kind string) string {
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		return uuid.NewSHA1(idSpace, []byte(kind+"\x00"+k)).String()
	}
	return uuid.Must(uuid.NewV7()).String()
}

// checkKey refuses an Idempotency-Key that is too long or not printable
// ASCII.
func checkKey(r *http.Request) error {
	k := r.Header.Get("Idempotency-Key")
	if len(k) > MaxIdempotencyKeyLength || strings.IndexFunc(k, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
		return badRequest("invalid_idempotency_key", "the Idempotency-Key must be at most 200 printable ASCII characters without spaces")
	}
	return nil
}

// claim binds the request's Idempotency-Key, if any, to the command it
// asks for, refuses the request when the key was used for another command,
// and returns the answer saved for an earlier request with the key. A
// command that fails validation binds nothing: it writes nothing, and the
// client may correct it and send it again with its key.
func (s *server) claim(r *http.Request, cmd any) (*Accepted, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || s.Keys == nil {
		return nil, nil
	}
	if v, ok := cmd.(interface{ Validate() error }); ok && v.Validate() != nil {
		return nil, nil
	}
	b, err := json.Marshal(cmd) // the key itself is not in the JSON
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte(cqrs.CommandName(cmd)+"\x00"), b...))
	fp := hex.EncodeToString(sum[:])
	bound, saved, err := s.Keys.Claim(r.Context(), key, fp)
	if err != nil {
		return nil, err
	}
	if bound != fp {
		return nil, errKeyReused
	}
	return saved, nil
}
