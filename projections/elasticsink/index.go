package elasticsink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/stratadev/strata/projections"
)

// Index declares a projection's index.
type Index struct {
	// Alias is the name readers search and handlers write to; the indices
	// behind it are its generations, named Alias-g<n>.
	Alias string
	// Mappings is the body of the index's mappings, such as
	// {"dynamic":"strict","properties":{...}}.
	Mappings json.RawMessage
	// Settings are the index settings, such as {"number_of_shards":1}.
	Settings json.RawMessage
}

// Projection is a projection into Elasticsearch: its handler writes through
// a [*Tx], and it declares its index.
type Projection interface {
	projections.Projection[*Tx]
	Index() Index
}

// meta is what the sink keeps in an index's mappings (_meta.strata).
type meta struct {
	Alias string `json:"alias"`
	// Rebuild is set on a generation a rebuild builds, and cleared once it
	// has replaced the old one and the live checkpoint has moved.
	Rebuild     bool   `json:"rebuild,omitempty"`
	HeadCommit  uint64 `json:"head_commit,omitempty"`
	HeadPrepare uint64 `json:"head_prepare,omitempty"`
}

// createBody builds a create-index request body: ix's mappings with
// _meta.strata set, its settings and, when alias is not empty, the alias.
func createBody(ix Index, m meta, alias bool) ([]byte, error) {
	mappings := map[string]json.RawMessage{}
	if len(ix.Mappings) > 0 {
		if err := json.Unmarshal(ix.Mappings, &mappings); err != nil {
			return nil, fmt.Errorf("elasticsink: index %s: mappings: %w", ix.Alias, err)
		}
	}
	metas := map[string]any{}
	if raw, ok := mappings["_meta"]; ok {
		if err := json.Unmarshal(raw, &metas); err != nil {
			return nil, fmt.Errorf("elasticsink: index %s: mappings._meta: %w", ix.Alias, err)
		}
	}
	metas["strata"] = m
	mb, err := json.Marshal(metas)
	if err != nil {
		return nil, err
	}
	mappings["_meta"] = mb
	body := map[string]any{"mappings": mappings}
	if len(ix.Settings) > 0 {
		body["settings"] = ix.Settings
	}
	if alias {
		body["aliases"] = map[string]any{ix.Alias: map[string]any{"is_write_index": true}}
	}
	return json.Marshal(body)
}

// EnsureIndex creates the first generation of p's index, alias-g1, behind
// the alias, unless the alias exists. It returns the index behind the
// alias. It is safe to call from many processes at once.
func (s *Sink) EnsureIndex(ctx context.Context, p Projection) (string, error) {
	ix := p.Index()
	if err := validIndex(ix); err != nil {
		return "", err
	}
	if cur, err := s.aliasIndices(ctx, ix.Alias); err != nil || len(cur) > 0 {
		return first(cur), err
	}
	body, err := createBody(ix, meta{Alias: ix.Alias}, true)
	if err != nil {
		return "", err
	}
	name := ix.Alias + "-g1"
	create := s.client.Indices.Create
	err = s.request(ctx, "create index "+name, s.cfg.BulkTimeout, func(ctx context.Context) (*esapi.Response, error) {
		return create(name, create.WithBody(bytes.NewReader(body)), create.WithContext(ctx))
	})
	if err != nil && !isType(err, "resource_already_exists_exception") {
		return "", err
	}
	cur, err := s.aliasIndices(ctx, ix.Alias)
	if err == nil && len(cur) == 0 {
		err = fmt.Errorf("elasticsink: index %s exists without the alias %s", name, ix.Alias)
	}
	return first(cur), err
}

// request sends one request whose answer does not matter but for its
// status, bounded by d; errors name op.
func (s *Sink) request(ctx context.Context, op string, d time.Duration, send func(context.Context) (*esapi.Response, error)) error {
	ctx, cancel := context.WithTimeoutCause(ctx, d, &TimeoutError{Op: op, After: d})
	defer cancel()
	res, err := send(ctx)
	return timedOut(ctx, do(op, done(res, err)))
}

// newGeneration creates an index for ix, named alias-g<unix ms>, with m in
// its _meta and without the alias.
func (s *Sink) newGeneration(ctx context.Context, ix Index, m meta) (string, error) {
	body, err := createBody(ix, m, false)
	if err != nil {
		return "", err
	}
	index := ix.Alias + "-g" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	create := s.client.Indices.Create
	return index, s.request(ctx, "create index "+index, s.cfg.BulkTimeout, func(ctx context.Context) (*esapi.Response, error) {
		return create(index, create.WithBody(bytes.NewReader(body)), create.WithContext(ctx))
	})
}

// moveAlias points alias at index alone, in one request: searches see the
// indices it pointed at (from) or index, never neither.
func (s *Sink) moveAlias(ctx context.Context, alias string, from []string, index string) error {
	var actions []map[string]any
	for _, idx := range from {
		actions = append(actions, map[string]any{"remove": map[string]any{"index": idx, "alias": alias}})
	}
	actions = append(actions, map[string]any{"add": map[string]any{"index": index, "alias": alias, "is_write_index": true}})
	body, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		return err
	}
	upd := s.client.Indices.UpdateAliases
	return s.request(ctx, "move alias "+alias+" to "+index, s.cfg.BulkTimeout, func(ctx context.Context) (*esapi.Response, error) {
		return upd(bytes.NewReader(body), upd.WithContext(ctx))
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func validIndex(ix Index) error {
	if ix.Alias == "" || strings.ToLower(ix.Alias) != ix.Alias || strings.ContainsAny(ix.Alias, `\/*?"<>| ,#:`) ||
		strings.HasPrefix(ix.Alias, "_") || strings.HasPrefix(ix.Alias, "-") || strings.HasPrefix(ix.Alias, "+") {
		return fmt.Errorf("elasticsink: index alias %q: want a lower-case Elasticsearch name", ix.Alias)
	}
	return nil
}

// aliasIndices returns the indices behind alias, sorted.
func (s *Sink) aliasIndices(ctx context.Context, alias string) (_ []string, err error) {
	ctx, cancel := s.small(ctx, "get alias "+alias)
	defer cancel()
	defer func() { err = timedOut(ctx, err) }()
	res, err := s.client.Indices.GetAlias(s.client.Indices.GetAlias.WithName(alias),
		s.client.Indices.GetAlias.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("elasticsink: get alias %s: %w", alias, err)
	}
	defer drain(res.Body)
	if res.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err := check(res, nil, "get alias "+alias); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("elasticsink: get alias %s: %w", alias, err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// check turns a failed response into an error; it closes the body of
// failed responses only.
func check(res *esapi.Response, err error, op string) error {
	if err != nil {
		return fmt.Errorf("elasticsink: %s: %w", op, err)
	}
	if !res.IsError() {
		return nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return &ResponseError{Op: op, Status: res.StatusCode, Body: string(bytes.TrimSpace(b))}
}

// isType reports whether err is a response error of Elasticsearch error
// type typ.
func isType(err error, typ string) bool {
	var re *ResponseError
	return errors.As(err, &re) && strings.Contains(re.Body, `"type":"`+typ+`"`)
}

// drain reads what is left of a response body and closes it, so that its
// connection can serve the next request.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, body)
	_ = body.Close()
}

// done checks a response whose body does not matter, and closes it.
func done(res *esapi.Response, err error) error {
	if err != nil {
		return err
	}
	if err := check(res, err, "request"); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return res.Body.Close()
}

// do is done for the operation op.
func do(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *ResponseError
	if errors.As(err, &re) {
		re.Op = op
		return re
	}
	return fmt.Errorf("elasticsink: %s: %w", op, err)
}
