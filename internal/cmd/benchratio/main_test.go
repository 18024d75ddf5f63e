package main

import (
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	in := `goos: linux
BenchmarkAppendOne/strata-2         	    1000	      1250 ns/op	  10.0 client-µs/op	  40.0 server-µs/op	     300 B/op
BenchmarkAppendOne/raw-2            	    1000	      1000 ns/op	   8.0 client-µs/op	  32.0 server-µs/op
BenchmarkAppendOne/strata-2         	    1000	      1200 ns/op
BenchmarkAppendOne/raw-2            	    1000	      1100 ns/op
BenchmarkAppendOne/strata-2         	    1000	      5000 ns/op
BenchmarkAppendOne/raw-2            	    1000	       900 ns/op
BenchmarkReadAll/batch=500/strata   	      10	       100 ns/op
BenchmarkReadAll/batch=500/raw      	      10	        90 ns/op
BenchmarkLonely/strata-2            	      10	       100 ns/op
PASS
`
	var out strings.Builder
	tg := targets{}
	if err := tg.Set("AppendOne=0.9,ReadAll=0.8"); err != nil {
		t.Fatal(err)
	}
	if err := run(strings.NewReader(in), &out, tg); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, in) {
		t.Errorf("input not echoed first:\n%s", got)
	}
	table := strings.TrimPrefix(got, in)
	for _, want := range []string{
		"AppendOne          1250       1000        0.80  >= 0.90  BELOW   50.0  40.0  0.80",
		"ReadAll/batch=500           100         90        0.90  >= 0.80     ok",
	} {
		if !strings.Contains(strings.Join(strings.Fields(table), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "Lonely") {
		t.Errorf("a benchmark without a raw pair is in the table:\n%s", table)
	}
}

func TestRunPeer(t *testing.T) {
	t.Parallel()
	in := `pkg: github.com/stratadev/strata/internal/peerbench
BenchmarkAppendOne/durable/strata-2   	     100	      2000 ns/op	  10.0 client-µs/op	  30.0 server-µs/op
BenchmarkAppendOne/durable/raw-2      	     100	      1000 ns/op	   5.0 client-µs/op	  15.0 server-µs/op
BenchmarkAppendOne/durable/peer-2     	     100	      5000 ns/op	  20.0 client-µs/op	  80.0 server-µs/op
BenchmarkAppendOne/durable/strata-2   	     100	      2200 ns/op	  10.0 client-µs/op	  30.0 server-µs/op
BenchmarkAppendOne/durable/raw-2      	     100	      1100 ns/op	   5.0 client-µs/op	  15.0 server-µs/op
BenchmarkAppendOne/durable/peer-2     	     100	      3000 ns/op	  20.0 client-µs/op	  80.0 server-µs/op
BenchmarkAppendOne/durable/strata-2   	     100	      1800 ns/op	  10.0 client-µs/op	  30.0 server-µs/op
BenchmarkAppendOne/durable/raw-2      	     100	       900 ns/op	   5.0 client-µs/op	  15.0 server-µs/op
BenchmarkAppendOne/durable/peer-2     	     100	      4000 ns/op	  20.0 client-µs/op	  80.0 server-µs/op
BenchmarkOnlyPeer/fast/strata-2       	     100	      1000 ns/op
BenchmarkOnlyPeer/fast/peer-2         	     100	       500 ns/op
BenchmarkReadAll/strata-2             	      10	       100 ns/op
BenchmarkReadAll/raw-2                	      10	        90 ns/op
PASS
`
	var out strings.Builder
	tg := targets{}
	if err := tg.Set("AppendOne=0.4"); err != nil {
		t.Fatal(err)
	}
	if err := run(strings.NewReader(in), &out, tg); err != nil {
		t.Fatal(err)
	}
	table := strings.TrimPrefix(out.String(), in)
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, want := range []string{
		"benchmark strata ns/op raw ns/op strata/raw target peer ns/op strata/peer CPU µs/op strata raw peer CPU strata/raw strata/peer",
		// Medians: strata 2000, raw 1000, peer 4000; CPU 40, 20, 100.
		"AppendOne/durable 2000 1000 0.50 >= 0.40 ok 4000 2.00 40.0 20.0 100.0 0.50 2.50",
		// No raw: no strata/raw and no target; no CPU: no CPU columns.
		"OnlyPeer/fast 1000 500 0.50",
		// No peer in a table that has peers: the peer columns are empty.
		"ReadAll 100 90 0.90",
	} {
		if !strings.Contains(norm(table), norm(want)) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "OnlyPeer/fast" && strings.Contains(line, ">=") {
			t.Errorf("a pair without raw has a target: %q", line)
		}
	}
}

func TestRunWithoutPeerKeepsColumns(t *testing.T) {
	t.Parallel()
	in := "BenchmarkA/strata-2 10 100 ns/op\nBenchmarkA/raw-2 10 50 ns/op\n"
	var out strings.Builder
	if err := run(strings.NewReader(in), &out, targets{}); err != nil {
		t.Fatal(err)
	}
	table := strings.TrimPrefix(out.String(), in)
	if strings.Contains(table, "peer") {
		t.Errorf("a table without peers has peer columns:\n%s", table)
	}
	if want := "benchmark strata ns/op raw ns/op strata/raw target CPU µs/op strata raw CPU strata/raw"; !strings.Contains(strings.Join(strings.Fields(table), " "), want) {
		t.Errorf("header is not %q:\n%s", want, table)
	}
}
