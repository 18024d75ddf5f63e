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
