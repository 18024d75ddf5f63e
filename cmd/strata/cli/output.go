package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// Output formats.
const (
	formatTable = "table" // aligned columns with a header, for people
	formatJSON  = "json"  // one JSON document (tail: one object per line)
	formatLines = "lines" // tab-separated fields, no header, for pipes
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) stdout() io.Writer { return a.cfg.Stdout }

func (a *app) tty() bool { return a.cfg.IsTerminal(a.cfg.Stdout) }

// format is the output format: the flag, or table on a terminal and lines
// elsewhere.
func (a *app) format() string {
	if a.flags.output != "" {
		return a.flags.output
	}
	if a.tty() {
		return formatTable
	}
	return formatLines
}

// table writes rows as a table with a header, or as tab-separated lines.
type table struct {
	w      io.Writer
	tw     *tabwriter.Writer
	header []string
	lines  bool
	wrote  bool
}

func (a *app) newTable(header ...string) *table {
	t := &table{w: a.stdout(), header: header, lines: a.format() == formatLines}
	if !t.lines {
		t.tw = tabwriter.NewWriter(a.stdout(), 0, 4, 2, ' ', 0)
	}
	return t
}

func (t *table) row(cells ...string) {
	if t.lines {
		for i, c := range cells {
			cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		}
		fmt.Fprintln(t.w, strings.Join(cells, "\t"))
		return
	}
	if !t.wrote {
		fmt.Fprintln(t.tw, strings.Join(t.header, "\t"))
		t.wrote = true
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush ends the table; a table without rows prints its header alone.
func (t *table) flush() {
	if t.tw == nil {
		return
	}
	if !t.wrote {
		fmt.Fprintln(t.tw, strings.Join(t.header, "\t"))
		t.wrote = true
	}
	t.tw.Flush()
}

// writeJSON writes v as one indented JSON document.
func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// truncate shortens s to n runes for a table cell.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// formatAge renders a duration for people: 850ms, 3.2s, 4m10s, 2h5m, 3d4h.
func formatAge(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
	}
}

// formatCount renders n with thousands separators: 1,234,567.
func formatCount(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func formatRate(r float64) string {
	switch {
	case r <= 0:
		return "0/s"
	case r < 10:
		return fmt.Sprintf("%.1f/s", r)
	default:
		return formatCount(int64(r+0.5)) + "/s"
	}
}

// writeCompactJSON writes v as JSON on one line.
func writeCompactJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
