// Command benchratio reads `go test -bench` output on stdin, echoes it, and
// then prints a table that pairs each benchmark X/strata with X/raw: the
// ratio of their throughputs (raw ns/op ÷ strata ns/op; 1 means strata costs
// nothing over doing the same work by hand). When there is an X/peer too
// (the same work done with another event-sourcing library,
// internal/peerbench), the same row shows it and strata/peer (peer ns/op ÷
// strata ns/op; above 1 means strata is faster); a table without any X/peer
// looks as it did before. A row needs X/strata and X/raw or X/peer. With
// -count > 1 each side is the median of its runs.
//
//	go test -run '^$' -bench . ./es/pgstore | go run ./internal/cmd/benchratio -target Append=0.8
//
// When both sides report the metrics client-µs/op and server-µs/op (CPU
// time in the benchmark process and in the database server), the table also
// shows their sums and the ratios of those, which a busy machine distorts
// far less than wall time.
//
// A -target X=R flag marks the pair X (or every pair whose name starts with
// X/) as BELOW when its strata/raw ratio is under R. The figures are for reading, not
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

// benchLine matches "BenchmarkX/strata-2   1000   1234 ns/op ...", and
// metric matches each "value unit" pair after the iteration count.
var (
	benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([0-9.e+]+) ns/op`)
	metric    = regexp.MustCompile(`([0-9.e+]+) (\S+)`)
)

// cpuMetrics are summed into the CPU column.
var cpuMetrics = []string{"client-µs/op", "server-µs/op"}

func run(in io.Reader, out io.Writer, tg targets) error {
	runs := map[string][]float64{} // full name → ns/op of each run
	cpu := map[string][]float64{}  // full name → CPU µs/op of each run that reports it
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
		found, sum := 0, 0.0
		for _, mm := range metric.FindAllStringSubmatch(line, -1) {
			if slices.Contains(cpuMetrics, mm[2]) {
				if v, err := strconv.ParseFloat(mm[1], 64); err == nil {
					found++
					sum += v
				}
			}
		}
		if found == len(cpuMetrics) {
			cpu[m[1]] = append(cpu[m[1]], sum)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}

	// A pair is X/strata with X/raw, X/peer or both.
	type side struct {
		ns, cpu float64 // medians; cpu is 0 when not reported
		ok      bool
	}
	get := func(name string) side {
		ns, ok := runs[name]
		if !ok {
			return side{}
		}
		s := side{ns: median(ns), ok: true}
		if c := cpu[name]; len(c) > 0 {
			s.cpu = median(c)
		}
		return s
	}
	type pair struct {
		name              string
		strata, raw, peer side
	}
	var pairs []pair
	anyPeer := false
	for _, name := range order {
		base, ok := strings.CutSuffix(name, "/strata")
		if !ok {
			continue
		}
		p := pair{name: base, strata: get(name), raw: get(base + "/raw"), peer: get(base + "/peer")}
		if !p.raw.ok && !p.peer.ok {
			continue
		}
		anyPeer = anyPeer || p.peer.ok
		pairs = append(pairs, p)
	}
	if len(pairs) == 0 {
		return nil
	}
	// ratio is the throughput ratio of strata to other (other ns/op ÷
	// strata ns/op), "" when other is missing; cpuRatio the same for CPU.
	ratio := func(strata, other side) string {
		if !other.ok {
			return ""
		}
		return fmt.Sprintf("%.2f", other.ns/strata.ns)
	}
	cpuRatio := func(strata, other side) string {
		if !other.ok || strata.cpu <= 0 || other.cpu <= 0 {
			return ""
		}
		return fmt.Sprintf("%.2f", other.cpu/strata.cpu)
	}
	cpuOf := func(s side) string {
		if !s.ok || s.cpu <= 0 {
			return ""
		}
		return fmt.Sprintf("%.1f", s.cpu)
	}
	nsOf := func(s side) string {
		if !s.ok {
			return ""
		}
		return fmt.Sprintf("%.0f", s.ns)
	}

	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	if anyPeer {
		fmt.Fprintln(tw, "benchmark\tstrata ns/op\traw ns/op\tstrata/raw\ttarget\t\tpeer ns/op\tstrata/peer\tCPU µs/op strata\traw\tpeer\tCPU strata/raw\tstrata/peer\t")
	} else {
		fmt.Fprintln(tw, "benchmark\tstrata ns/op\traw ns/op\tstrata/raw\ttarget\t\tCPU µs/op strata\traw\tCPU strata/raw\t")
	}
	for _, p := range pairs {
		target, verdict := "", ""
		if r, ok := tg.target(p.name); ok && p.raw.ok {
			target = fmt.Sprintf(">= %.2f", r)
			verdict = "ok"
			if p.raw.ns/p.strata.ns < r {
				verdict = "BELOW"
			}
		}
		cols := []string{p.name, nsOf(p.strata), nsOf(p.raw), ratio(p.strata, p.raw), target, verdict}
		if anyPeer {
			cols = append(cols, nsOf(p.peer), ratio(p.strata, p.peer))
		}
		// The CPU columns only when strata and at least one other side report it.
		withCPU := cpuRatio(p.strata, p.raw) != "" || (anyPeer && cpuRatio(p.strata, p.peer) != "")
		switch {
		case !withCPU && anyPeer:
			cols = append(cols, "", "", "", "", "")
		case !withCPU:
			cols = append(cols, "", "", "")
		case anyPeer:
			cols = append(cols, cpuOf(p.strata), cpuOf(p.raw), cpuOf(p.peer), cpuRatio(p.strata, p.raw), cpuRatio(p.strata, p.peer))
		default:
			cols = append(cols, cpuOf(p.strata), cpuOf(p.raw), cpuRatio(p.strata, p.raw))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
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
