package elasticsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/elastic/go-elasticsearch/v8"
)

// Hit is one document a [Search] found.
type Hit[T any] struct {
	ID      string
	Score   float64
	Version int64 // when the request asks for "version": true
	Source  T
}

// Result is what a [Search] found.
type Result[T any] struct {
	// Total counts the matching documents (exactly up to 10,000 by
	// default; see track_total_hits).
	Total int64
	Hits  []Hit[T]
}

// Search runs a search on index (usually a projection's alias) and decodes
// the hits' sources into T. body is the search request, as a value that
// encodes to JSON (a map, a struct, a json.RawMessage), such as
//
//	map[string]any{"query": map[string]any{"match": map[string]any{"customer": "ada"}}, "size": 20}
//
// For anything else, use the client directly.
func Search[T any](ctx context.Context, client *elasticsearch.Client, index string, body any) (Result[T], error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Result[T]{}, fmt.Errorf("elasticsink: search %s: encode request: %w", index, err)
	}
	res, err := client.Search(client.Search.WithContext(ctx), client.Search.WithIndex(index),
		client.Search.WithBody(bytes.NewReader(b)))
	if err := check(res, err, "search "+index); err != nil {
		return Result[T]{}, err
	}
	defer drain(res.Body)
	var out struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
			Hits []struct {
				ID      string  `json:"_id"`
				Score   float64 `json:"_score"`
				Version int64   `json:"_version"`
				Source  T       `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return Result[T]{}, fmt.Errorf("elasticsink: search %s: decode: %w", index, err)
	}
	r := Result[T]{Total: out.Hits.Total.Value, Hits: make([]Hit[T], 0, len(out.Hits.Hits))}
	for _, h := range out.Hits.Hits {
		r.Hits = append(r.Hits, Hit[T]{ID: h.ID, Score: h.Score, Version: h.Version, Source: h.Source})
	}
	return r, nil
}
