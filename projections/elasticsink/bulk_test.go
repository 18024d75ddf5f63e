package elasticsink_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
	"github.com/stratadev/strata/projections/elasticsink/elastictest"
)

// rejectOnce answers the first bulk request of more than one item as a
// node under load would: Elasticsearch applies the request, and every
// other item of its answer is turned into a refusal with 429
// (es_rejected_execution_exception); the other items keep what
// Elasticsearch answered. It records the IDs it refused, and those of the
// items of the bulk requests that follow.
type rejectOnce struct {
	http.RoundTripper
	mu      sync.Mutex
	done    bool
	refused []string
	later   []string
}

func (r *rejectOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "/_bulk") {
		return r.RoundTripper.RoundTrip(req)
	}
	// The response names no IDs (the sink filters them out): take them
	// from the action lines of the request.
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var ids []string
	for line := range bytes.Lines(body) {
		var meta map[string]struct {
			ID string `json:"_id"`
		}
		if json.Unmarshal(line, &meta) != nil {
			continue
		}
		for op, m := range meta {
			if op == "index" || op == "delete" || op == "create" || op == "update" {
				ids = append(ids, m.ID)
			}
		}
	}
	res, err := r.RoundTripper.RoundTrip(req)
	if err != nil || res.StatusCode != http.StatusOK {
		return res, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	var out struct {
		Errors bool                        `json:"errors"`
		Items  []map[string]map[string]any `json:"items"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	if len(out.Items) != len(ids) {
		return nil, fmt.Errorf("rejectOnce: %d items in the response to %d actions", len(out.Items), len(ids))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range out.Items {
		for _, it := range m {
			switch {
			case r.done:
				r.later = append(r.later, ids[i])
			case len(out.Items) > 1 && i%2 == 1:
				it["status"] = 429
				it["error"] = map[string]any{"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}
				delete(it, "result")
				r.refused = append(r.refused, ids[i])
				out.Errors = true
			}
		}
	}
	if len(r.refused) > 0 {
		r.done = true
	}
	if b, err = json.Marshal(out); err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	res.ContentLength = int64(len(b))
	res.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return res, nil
}

// One bulk response that mixes created documents, a delete of a document
// that is not there (404), and items refused for a retryable reason (429):
// the sink sends again the refused items alone, which Elasticsearch had
// applied already and answers with version conflicts (409), and the batch
// commits with every document as written.
func TestMixedBulkResponse(t *testing.T) {
	t.Parallel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	rt := &rejectOnce{RoundTripper: tr}
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{elastictest.URL(t)}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, client, elasticsink.Config{})
	e.client = elastictest.Client(t) // reads not rewritten
	var events []any
	for i := range 6 {
		events = append(events, orderPlaced{Order: "o" + strconv.Itoa(i), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	events = append(events, orderCancelled{Order: "never-placed"})
	head := e.append(t, "order-mixed", events...)
	e.run(t, projections.Config{})
	e.waitFor(t, head)

	rt.mu.Lock()
	refused, later := slices.Clone(rt.refused), slices.Clone(rt.later)
	rt.mu.Unlock()
	if want := []string{"o1", "o3", "o5"}; !slices.Equal(refused, want) {
		t.Errorf("refused %v, want %v", refused, want)
	}
	slices.Sort(later)
	if want := []string{"o1", "o3", "o5"}; !slices.Equal(later, want) {
		t.Errorf("sent again %v, want the refused items alone, %v", later, want)
	}
	docs := e.docs(t)
	if len(docs) != 6 {
		t.Errorf("got %d documents, want 6", len(docs))
	}
	for i := range 6 {
		if d := docs["o"+strconv.Itoa(i)]; d.Source.Total != float64(i) || d.Version != int64(i+1) {
			t.Errorf("o%d = %+v, want total %d at version %d", i, d, i, i+1)
		}
	}
	if st := e.status(t); st.State != projections.StateRunning || st.LastError != nil {
		t.Errorf("status = %s, last error %v; want running, none", st.State, st.LastError)
	}
}
