package cli_test

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stratadev/strata/cmd/strata/cli"
	"github.com/stratadev/strata/projections"
)

// scrape reads the metrics at url with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", url, err)
	}
	return mfs
}

// sample returns the value of the sample of family name whose labels
// include labels (name=value pairs), and whether there is one.
func sample(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

var metricsURL = regexp.MustCompile(`serving metrics at (http://\S+)`)

func TestProjectionsRunMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := opts{projections: []cli.Projection{{Projection: &orderView{}}}, stdout: newBuffer()}
	res := e.place(t, 1, 2, 3, 4, 5)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := e.startRun(ctx, o, "--metrics-addr", "127.0.0.1:0")
	o.stdout.waitFor(t, "running order_view")
	url := metricsURL.FindStringSubmatch(o.stdout.String())
	if url == nil {
		t.Fatalf("run does not say where it serves metrics:\n%s", o.stdout)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	if err := projections.WaitFor(wctx, e.sink, "order_view", res.Position); err != nil {
		t.Fatal(err)
	}
	// The gauges follow the commit: poll for the scrape that shows it.
	deadline := time.Now().Add(10 * time.Second)
	mfs := scrape(t, url[1])
	for {
		if v, ok := sample(mfs, "strata_projection_events_applied_total", "strata_projection", "order_view"); ok && v == 5 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
		mfs = scrape(t, url[1])
	}
	p := []string{"strata_projection", "order_view"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"strata_projection_events_applied_total", p, 5},
		{"strata_projection_lag", p, 0},
		{"strata_projection_lag_age_seconds", p, 0},
		{"strata_projection_state", append(p, "strata_projection_state", "running"), 1},
		{"strata_projection_state", append(p, "strata_projection_state", "stalled"), 0},
	} {
		got, ok := sample(mfs, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got, _ := sample(mfs, "strata_store_read_events_total", "strata_read", "all"); got < 5 {
		t.Errorf("strata_store_read_events_total{strata_read=all} = %v, want at least 5", got)
	}
	if _, ok := sample(mfs, "go_goroutines"); !ok {
		t.Error("no go_goroutines: the Go runtime's metrics are missing")
	}

	cancel()
	r := <-done
	r.check(t, 0, "order_view: stopped at")
	if _, err := http.Get(url[1]); err == nil {
		t.Errorf("%s still answers after run returned", url[1])
	}
}

func TestProjectionsRunMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m, err := cli.StartMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	addr := m.URL[len("http://") : len(m.URL)-len(cli.MetricsPath)]
	r := e.cli(t.Context(), opts{projections: []cli.Projection{{Projection: &orderView{}}}}, "projections", "run", "--metrics-addr", addr)
	r.check(t, cli.ExitFailed, "--metrics-addr: serve metrics: listen tcp "+addr, "address already in use")
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
