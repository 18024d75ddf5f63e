// Command benchratio reads `go test -bench` output on stdin, echoes it, and
// then prints a table that pairs each benchmark X/strata with X/raw: the
// ratio of their throughputs (raw ns/op ÷ strata ns/op; 1 means strata costs
// nothing over doing the same work by hand). With -count > 1 each side is the
// median of its runs.
//
//	go test -run '^$' -bench . ./es/pgstore | go run ./internal/cmd/benchratio -target Append=0.8
//
// A -target X=R flag marks the pair X (or every pair whose name starts with
// X/) as BELOW when its ratio is under R. The figures are for reading, not
// assertions: the exit status is 0 unless the input cannot be read.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// targets maps a pair name (or name prefix) to its minimum ratio.
type targets map[string]float64

func (t targets) String() string { return fmt.Sprint(map[string]float64(t)) }

func (t targets) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		r, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || name == "" {
			return fmt.Errorf("want NAME=RATIO, got %q", kv)
		}
		t[name] = r
	}
	return nil
}

// target returns the target for pair name: an exact entry, else the longest
// entry that is a prefix of name followed by "/".
func (t targets) target(name string) (float64, bool) {
	if r, ok := t[name]; ok {
		return r, true
	}
	best, found := "", false
	for k := range t {
		if strings.HasPrefix(name, k+"/") && len(k) > len(best) {
			best, found = k, true
		}
	}
	return t[best], found
}

func main() {
	tg := targets{}
	flag.Var(tg, "target", "NAME=RATIO[,NAME=RATIO...]: minimum strata/raw throughput ratio of a pair (repeatable)")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, tg); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

// benchLine matches "BenchmarkX/strata-2   1000   1234 ns/op ...".
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([0-9.e+]+) ns/op`)

func run(in io.Reader, out io.Writer, tg targets) error {
	runs := map[string][]float64{} // full name → ns/op of each run
	var order []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ns, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		if _, seen := runs[m[1]]; !seen {
			order = append(order, m[1])
		}
		runs[m[1]] = append(runs[m[1]], ns)
	}
	if err := sc.Err(); err != nil {
		return err
	}

	type pair struct {
		name        string
		strata, raw float64
	}
	var pairs []pair
	for _, name := range order {
		base, ok := strings.CutSuffix(name, "/strata")
		if !ok {
			continue
		}
		raw, ok := runs[base+"/raw"]
		if !ok {
			continue
		}
		pairs = append(pairs, pair{base, median(runs[name]), median(raw)})
	}
	if len(pairs) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "benchmark\tstrata ns/op\traw ns/op\tstrata/raw\ttarget\t\t")
	for _, p := range pairs {
		ratio := p.raw / p.strata
		target, verdict := "", ""
		if r, ok := tg.target(p.name); ok {
			target = fmt.Sprintf(">= %.2f", r)
			verdict = "ok"
			if ratio < r {
				verdict = "BELOW"
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t\n", p.name, p.strata, p.raw, ratio, target, verdict)
	}
	return tw.Flush()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
