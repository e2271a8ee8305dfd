package netboot

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dodai-dev/dodai/internal/state"
)

// maxViewLines bounds the change lines written per redraw on a non-TTY
// view; beyond it a count stands for the rest (a boot storm must not turn
// stdout into the bottleneck).
const maxViewLines = 200

// view is the live terminal view: on a TTY a table redrawn in place (one
// row per machine), otherwise one line per machine change. Changes are
// queued where they happen (the DHCP and HTTP handlers) and written by
// redraw, once a second, off the hot path.
type view struct {
	w       io.Writer
	tty     bool
	mu      sync.Mutex
	dirty   bool
	pending []state.Machine
	dropped int
}

func newView(w io.Writer, tty bool) *view { return &view{w: w, tty: tty, dirty: true} }

func (v *view) changed(m state.Machine) {
	if v.w == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dirty = true
	if !v.tty {
		if len(v.pending) < maxViewLines {
			v.pending = append(v.pending, m)
		} else {
			v.dropped++
		}
	}
}

// redraw repaints the table on a TTY when something changed, or writes
// the queued change lines.
func (v *view) redraw(list func() []state.Machine) {
	if v.w == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.dirty {
		return
	}
	v.dirty = false
	if !v.tty {
		var b strings.Builder
		for _, m := range v.pending {
			fmt.Fprintf(&b, "%s  %-17s  %-6s  %-15s  %-10s  %s\n", m.LastSeen.Local().Format("15:04:05"), m.MAC, dash(m.Arch), dash(m.IP), m.Stage, dash(m.Node))
		}
		if v.dropped > 0 {
			fmt.Fprintf(&b, "%s  … and %d more changes\n", time.Now().Format("15:04:05"), v.dropped)
		}
		v.pending, v.dropped = v.pending[:0], 0
		_, _ = io.WriteString(v.w, b.String()) // the live view is best effort
		return
	}
	fmt.Fprint(v.w, "\x1b[H\x1b[2J")
	fmt.Fprint(v.w, Table(list(), time.Now()))
}

// progressLog turns machine changes into at most one info log line per
// second: the cluster's own nodes by name with their new stage, other
// machines as a count. The per-change lines are debug level.
type progressLog struct {
	mu     sync.Mutex
	nodes  map[string]string // node → latest stage since the last line
	others int               // changes of machines not in cluster.yaml
}

func (p *progressLog) changed(m state.Machine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.Node == "" {
		p.others++
		return
	}
	if p.nodes == nil {
		p.nodes = map[string]string{}
	}
	p.nodes[m.Node] = m.Stage
}

// flush writes the line if anything changed.
func (p *progressLog) flush(log *slog.Logger, total func() int) {
	p.mu.Lock()
	nodes, others := p.nodes, p.others
	p.nodes, p.others = nil, 0
	p.mu.Unlock()
	if len(nodes) == 0 && others == 0 {
		return
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i == 20 {
			fmt.Fprintf(&b, " +%d more", len(names)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n + "=" + nodes[n])
	}
	attrs := []any{"machines", total()}
	if b.Len() > 0 {
		attrs = append(attrs, "nodes", b.String())
	}
	if others > 0 {
		attrs = append(attrs, "otherChanges", others)
	}
	log.Info("boot progress", attrs...)
}

// Table renders machines as the live view's table.
func Table(ms []state.Machine, now time.Time) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tNODE\tARCH\tIP\tSTAGE\tPROGRESS\tLAST SEEN")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s ago\n", m.MAC, dash(m.Node), dash(m.Arch), dash(m.IP), m.Stage, progress(m.Stage), now.Sub(m.LastSeen).Round(time.Second))
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d machine(s) seen. Ctrl-C stops the server.\n", len(ms))
	return b.String()
}

var order = []string{"dhcp", "ipxe", "kernel", "initramfs", "config", "installed"}

func progress(stage string) string {
	var b strings.Builder
	done := true
	for i, s := range order {
		if i > 0 {
			b.WriteString("→")
		}
		if done {
			b.WriteString("#")
		} else {
			b.WriteString(".")
		}
		if s == stage {
			done = false
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
