package elasticsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/elasticsink"
)

// shadowIndices lists the indices whose names mark them as shadows of a
// verification of e's projection.
func (e env) shadowIndices(t *testing.T) []string {
	t.Helper()
	res, err := e.client.Indices.Get([]string{e.proj.alias + "-verify-*"}, e.client.Indices.Get.WithAllowNoIndices(true))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// mustDo returns a function that fails the test unless a request
// succeeded.
func mustDo(t *testing.T) func(*esapi.Response, error) {
	return func(res *esapi.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.IsError() {
			t.Fatalf("%s: %s", res.Status(), b)
		}
	}
}

func TestVerifyReportsTamperedDocuments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 5; i++ {
		e.append(t, fmt.Sprintf("order-%d", i), orderPlaced{Order: fmt.Sprintf("o%d", i), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	e.append(t, "order-2", statusChanged{Order: "o2", Status: "paid"})
	last := e.append(t, "order-5", orderCancelled{Order: "o5"})
	stop := e.run(t, projections.Config{})
	e.waitFor(t, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cfg := elasticsink.VerifyConfig{Worker: projections.Config{Logger: quiet}}

	d, err := e.sink.Verify(t.Context(), e.store, e.reg, e.proj, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equal() || d.Position != last || d.LiveDocs != 4 || d.RebuiltDocs != 4 || d.Events != 7 || !strings.HasPrefix(d.Index, e.proj.alias+"-g") {
		t.Errorf("untouched: %+v; want equal at %s, 4 documents on each side, 7 events, a live index %s-g*", d, last, e.proj.alias)
	}
	if s := e.shadowIndices(t); len(s) != 0 {
		t.Errorf("shadow indices left: %v", s)
	}

	// Tampered: a document deleted, one added, one field changed.
	c := e.client
	mustDo(t)(c.Delete(e.proj.alias, "o1", c.Delete.WithRefresh("true")))
	mustDo(t)(c.Index(e.proj.alias, strings.NewReader(`{"customer":"x","product":"p","total":9,"status":"placed","stream":"s"}`),
		c.Index.WithDocumentID("bogus"), c.Index.WithRefresh("true")))
	mustDo(t)(c.Update(e.proj.alias, "o3", strings.NewReader(`{"doc":{"status":"tampered"}}`), c.Update.WithRefresh("true")))
	d, err = e.sink.Verify(t.Context(), e.store, e.reg, e.proj, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Missing != 1 || d.Extra != 1 || d.Different != 1 || d.LiveDocs != 4 || d.RebuiltDocs != 4 {
		t.Errorf("tampered: missing %d, extra %d, different %d, documents %d/%d; want 1, 1, 1, 4/4",
			d.Missing, d.Extra, d.Different, d.LiveDocs, d.RebuiltDocs)
	}
	var got []string
	for _, s := range d.Samples {
		got = append(got, fmt.Sprintf("%s %s %v live:%t rebuilt:%t", s.Kind, s.ID, s.Fields, s.Live != nil, s.Rebuilt != nil))
	}
	slices.Sort(got)
	want := []string{
		"different o3 [status] live:true rebuilt:true",
		"extra bogus [] live:true rebuilt:false",
		"missing o1 [] live:false rebuilt:true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("samples\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	d, err = e.sink.Verify(t.Context(), e.store, e.reg, e.proj, elasticsink.VerifyConfig{Worker: cfg.Worker, Ignore: []string{"status"}})
	if err != nil || d.Different != 0 || d.Differences() != 2 {
		t.Errorf("ignoring status: %d different, %d differences, %v; want 0, 2, no error", d.Different, d.Differences(), err)
	}
	if s := e.shadowIndices(t); len(s) != 0 {
		t.Errorf("shadow indices left: %v", s)
	}
}

func TestVerifyElasticWhileAppending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var last es.Position
	for i := range 200 {
		last = e.append(t, fmt.Sprintf("order-%d", i%40), orderPlaced{Order: fmt.Sprintf("o%d", i%40), Customer: "c", Product: "p", Total: i, Status: "placed"})
	}
	e.run(t, projections.Config{BatchSize: 5, BatchWait: -1})
	e.waitFor(t, last)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		wg       sync.WaitGroup
		appended int
		appErr   error
	)
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			b, _ := json.Marshal(statusChanged{Order: fmt.Sprintf("o%d", i%40), Status: fmt.Sprint("s", i)})
			if _, err := e.store.Append(ctx, fmt.Sprintf("order-%d", i%40), es.Any, es.EventData{Type: "StatusChanged", Data: b}); err != nil {
				if ctx.Err() == nil {
					appErr = err
				}
				return
			}
			appended++
		}
	})
	var reports int
	d, err := e.sink.Verify(t.Context(), e.store, e.reg, e.proj, elasticsink.VerifyConfig{
		Worker: projections.Config{Logger: quiet, BatchSize: 50}, Progress: func(projections.RebuildProgress) { reports++ },
	})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if appErr != nil || appended == 0 {
		t.Fatalf("appended %d events, then %v", appended, appErr)
	}
	if !d.Equal() || d.LiveDocs != 40 || d.Position.Before(last) {
		t.Errorf("verify while appending: %+v; want equal, 40 documents, at or after %s", d, last)
	}
	if reports == 0 {
		t.Error("no progress reported")
	}
}
