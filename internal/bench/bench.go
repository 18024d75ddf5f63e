// Package bench holds what the benchmarks of several packages and modules
// of this repository share: a meter of the CPU time a benchmark costs, in
// its own process and in a PostgreSQL server on the same machine, and the
// round-robin streams of an append workload.
package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Meter measures the CPU time a benchmark spends in its own process and
// in the PostgreSQL server, when the server runs on this machine: wall time
// on a shared machine says as much about the neighbours as about the code,
// CPU time much less. The server's time is that of the postmaster's
// children (and of the children it has reaped), read from /proc.
type Meter struct {
	postmaster       int
	client, server   float64 // µs at start
	serverMeasurable bool
}

// Start starts measuring for benchmark b, whose server is the one pool
// connects to.
func Start(b *testing.B, pool *pgxpool.Pool) *Meter {
	m := &Meter{}
	var backend int
	if err := pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&backend); err == nil {
		if f := procStat(backend); f != nil {
			m.postmaster, _ = strconv.Atoi(f[3])
		}
	}
	m.client, m.server = selfµs(), m.serverCPU()
	m.serverMeasurable = m.server >= 0
	return m
}

// Stop reports CPU µs per op as the metrics client-µs/op and server-µs/op.
func (m *Meter) Stop(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric((selfµs()-m.client)/n, "client-µs/op")
	if m.serverMeasurable {
		if s := m.serverCPU(); s >= 0 {
			b.ReportMetric((s-m.server)/n, "server-µs/op")
		}
	}
}

// Process returns the CPU time this process has used so far, user and
// system; 0 when it cannot be read.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func selfµs() float64 { return float64(Process()) / 1e3 }

// serverCPU returns the CPU µs used by the postmaster's children so far, or
// -1 when it cannot be read.
func (m *Meter) serverCPU() float64 {
	if m.postmaster == 0 {
		return -1
	}
	pm := procStat(m.postmaster)
	if pm == nil {
		return -1
	}
	ticks := atoi(pm[15]) + atoi(pm[16]) // cutime + cstime: reaped children
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	parent := strconv.Itoa(m.postmaster)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(pid); f != nil && f[3] == parent {
			ticks += atoi(f[13]) + atoi(f[14]) // utime + stime
		}
	}
	return float64(ticks) * 1e6 / 100 // USER_HZ is 100 on Linux
}

// procStat returns the fields of /proc/pid/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	// Index i holds field i+1 of proc(5): 3 is the parent, 13 and 14 utime
	// and stime, 15 and 16 cutime and cstime. Pid and name are left out.
	return append([]string{"", ""}, strings.Fields(s[i+1:])...)
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Streams hands out streams and their versions round-robin, as a workload
// that appends to many aggregates does.
type Streams struct {
	prefix   string
	versions []int64
	next     int
}

// NewStreams returns n streams named prefix-0 to prefix-(n-1), all empty.
func NewStreams(prefix string, n int) *Streams {
	return &Streams{prefix: prefix, versions: make([]int64, n)}
}

// Take returns a stream and its version, and counts k events appended to it.
func (s *Streams) Take(k int) (string, int64) {
	i := s.next
	s.next = (s.next + 1) % len(s.versions)
	v := s.versions[i]
	s.versions[i] += int64(k)
	return fmt.Sprintf("%s-%d", s.prefix, i), v
}
