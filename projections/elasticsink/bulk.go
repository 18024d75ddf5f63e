package elasticsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/sync/errgroup"

	"github.com/stratadev/strata/internal/backoff"
)

// action is one bulk item.
type action struct {
	index, id string
	version   int64
	delete    bool
	source    []byte
}

// size is about how many bytes the action takes in a bulk body.
func (a *action) size() int { return 96 + len(a.index) + len(a.id) + len(a.source) }

// write writes the action's lines; the index is left out when the
// request names it (inURL).
func (a *action) write(b *bytes.Buffer, inURL bool) {
	if a.delete {
		b.WriteString(`{"delete":{`)
	} else {
		b.WriteString(`{"index":{`)
	}
	if !inURL {
		b.WriteString(`"_index":`)
		writeString(b, a.index)
		b.WriteByte(',')
	}
	b.WriteString(`"_id":`)
	writeString(b, a.id)
	b.WriteString(`,"version":`)
	b.WriteString(strconv.FormatInt(a.version, 10))
	b.WriteString(`,"version_type":"external"}}` + "\n")
	if !a.delete {
		b.Write(a.source)
		b.WriteByte('\n')
	}
}

func writeString(b *bytes.Buffer, s string) {
	if !strings.ContainsAny(s, `"\`) && isPrintableASCII(s) {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	j, _ := json.Marshal(s)
	b.Write(j)
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// bulk sends acts in requests bounded by FlushActions and FlushBytes, up to
// Concurrency at a time, and retries the items refused for retryable
// reasons. It returns nil when every item is applied or was already.
func (s *Sink) bulk(ctx context.Context, acts []action) error {
	var chunks [][]action
	for start := 0; start < len(acts); {
		end, bytes := start, 0
		for end < len(acts) && end-start < s.cfg.FlushActions && (end == start || bytes+acts[end].size() <= s.cfg.FlushBytes) {
			bytes += acts[end].size()
			end++
		}
		chunks = append(chunks, acts[start:end])
		start = end
	}
	if len(chunks) == 1 {
		return s.bulkChunk(ctx, chunks[0])
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Concurrency)
	for _, c := range chunks {
		g.Go(func() error { return s.bulkChunk(gctx, c) })
	}
	return g.Wait()
}

// bulkResponse is the part of a bulk response the sink reads: the
// filter_path of each request asks for no more. Each item is a struct, not
// a map keyed by its action, so that decoding a response of a thousand
// items does not make a thousand maps.
type bulkResponse struct {
	Errors bool         `json:"errors"`
	Items  []bulkResult `json:"items"`
}

// bulkResult is one item of a bulk response: one of its fields is set,
// named after the action.
type bulkResult struct {
	Index  bulkItem `json:"index"`
	Create bulkItem `json:"create"`
	Update bulkItem `json:"update"`
	Delete bulkItem `json:"delete"`
}

// item returns the result and the action it answers; every result has a
// status, so an empty one is an action the sink does not send.
func (r *bulkResult) item() (*bulkItem, string) {
	switch {
	case r.Index.Status != 0:
		return &r.Index, "index"
	case r.Delete.Status != 0:
		return &r.Delete, "delete"
	case r.Create.Status != 0:
		return &r.Create, "create"
	case r.Update.Status != 0:
		return &r.Update, "update"
	}
	return nil, ""
}

// bulkItem is the result of one action. Its index and ID are the
// action's: the sink writes to the indices its aliases resolved to, so the
// response would only repeat them (and decoding them would cost two
// strings per item).
type bulkItem struct {
	Status int        `json:"status"`
	Error  *errorBody `json:"error"`
}

type errorBody struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	CausedBy *errorBody `json:"caused_by"`
}

func (e *errorBody) typeReason() (string, string) {
	if e == nil {
		return "", ""
	}
	reason := e.Reason
	for c := e.CausedBy; c != nil; c = c.CausedBy {
		reason += ": " + c.Type + ": " + c.Reason
	}
	return e.Type, reason
}

// bulkChunk sends one request's worth of actions, then again the items
// refused for retryable reasons, with backoff.
func (s *Sink) bulkChunk(ctx context.Context, acts []action) error {
	var body bytes.Buffer
	for attempt := 0; ; attempt++ {
		// One index for all (the usual case) goes in the URL, which keeps
		// it out of every action line.
		index := acts[0].index
		for i := range acts {
			if acts[i].index != index {
				index = ""
				break
			}
		}
		body.Reset()
		for i := range acts {
			acts[i].write(&body, index != "")
		}
		retry, err := s.send(ctx, index, &body, acts)
		if err != nil {
			return err
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt >= s.cfg.MaxRetries {
			last := retry[len(retry)-1]
			return fmt.Errorf("%w: %d items still refused after %d attempts, the last %s", ErrRetriesExhausted, len(retry), attempt+1, last.err)
		}
		s.cfg.Logger.WarnContext(ctx, "elasticsink: retrying refused items", slog.Int("items", len(retry)),
			slog.Int("attempt", attempt+1), slog.String("error", retry[0].err.Error()))
		if !(backoff.Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}).Wait(ctx, attempt) {
			return ctx.Err()
		}
		s.metrics.retries.Add(ctx, int64(len(retry)))
		acts = acts[:0:0]
		for _, r := range retry {
			acts = append(acts, r.action)
		}
	}
}

type refused struct {
	action
	err *ItemError
}

// send sends one bulk request, to index when it is not empty, and sorts
// its items out: it returns those to retry, or the first item refused for
// good as an *ItemError.
func (s *Sink) send(ctx context.Context, index string, body *bytes.Buffer, acts []action) (_ []refused, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.BulkTimeout, &TimeoutError{Op: "bulk", After: s.cfg.BulkTimeout})
	defer cancel()
	defer func() { err = timedOut(ctx, err) }()
	bulk := s.client.Bulk
	opts := []func(*esapi.BulkRequest){bulk.WithContext(ctx), bulk.WithFilterPath("errors", "items.*.status", "items.*.error")}
	if index != "" {
		opts = append(opts, bulk.WithIndex(index))
	}
	if s.cfg.Refresh != "" {
		opts = append(opts, bulk.WithRefresh(s.cfg.Refresh))
	}
	res, err := bulk(bytes.NewReader(body.Bytes()), opts...)
	if err != nil {
		return nil, fmt.Errorf("elasticsink: bulk: %w", err)
	}
	defer drain(res.Body)
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return nil, &ResponseError{Op: "bulk", Status: res.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	var br bulkResponse
	if err := json.NewDecoder(res.Body).Decode(&br); err != nil {
		return nil, fmt.Errorf("elasticsink: bulk: read response: %w", err)
	}
	if len(br.Items) != len(acts) {
		return nil, fmt.Errorf("elasticsink: bulk: %d items in the response to %d actions", len(br.Items), len(acts))
	}
	var (
		retry          []refused
		counts, failed = map[itemKey]int64{}, map[itemKey]int64{}
	)
	defer func() { s.metrics.response(ctx, counts, failed) }()
	for i := range br.Items {
		it, op := br.Items[i].item()
		if it != nil {
			counts[itemKey{op, it.Status}]++
		}
		switch {
		case it == nil:
			return nil, fmt.Errorf("elasticsink: bulk: item %d of the response has no status", i)
		case it.Status >= 200 && it.Status < 300:
		case it.Status == 409:
			// A version conflict: the stored document is as new or newer.
		case it.Status == 404 && op == "delete" && it.Error == nil:
			// Deleted already (the delete is recorded with its version).
		default:
			typ, reason := it.Error.typeReason()
			ie := &ItemError{Index: acts[i].index, ID: acts[i].id, Action: op, Status: it.Status, Type: typ, Reason: reason}
			failed[itemKey{op, it.Status}]++
			if IsTransient(ie) {
				retry = append(retry, refused{acts[i], ie})
				continue
			}
			return nil, ie
		}
	}
	return retry, nil
}

// mget reads documents in real time; absent ones are left out.
func (s *Sink) mget(ctx context.Context, keys []docKey) (_ map[docKey]map[string]any, err error) {
	ctx, cancel := s.small(ctx, "read documents to update")
	defer cancel()
	defer func() { err = timedOut(ctx, err) }()
	type ref struct {
		Index string `json:"_index"`
		ID    string `json:"_id"`
	}
	req := struct {
		Docs []ref `json:"docs"`
	}{}
	for _, k := range keys {
		req.Docs = append(req.Docs, ref{k.index, k.id})
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	res, err := s.client.Mget(bytes.NewReader(b), s.client.Mget.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("elasticsink: read documents to update: %w", err)
	}
	defer drain(res.Body)
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return nil, &ResponseError{Op: "mget", Status: res.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	var out struct {
		Docs []struct {
			Found  bool           `json:"found"`
			Source map[string]any `json:"_source"`
			Error  *errorBody     `json:"error"`
		} `json:"docs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("elasticsink: read documents to update: %w", err)
	}
	if len(out.Docs) != len(keys) {
		return nil, fmt.Errorf("elasticsink: read documents to update: %d answers to %d", len(out.Docs), len(keys))
	}
	found := make(map[docKey]map[string]any)
	for i, d := range out.Docs {
		if d.Error != nil {
			typ, reason := d.Error.typeReason()
			return nil, &ItemError{Index: keys[i].index, ID: keys[i].id, Action: "get", Status: 500, Type: typ, Reason: reason}
		}
		if d.Found && d.Source != nil {
			found[keys[i]] = d.Source
		}
	}
	return found, nil
}
