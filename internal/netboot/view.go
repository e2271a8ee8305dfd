package netboot

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dodai-dev/dodai/internal/state"
)

// view is the live terminal view: on a TTY a table redrawn in place (one
// row per machine), otherwise one line per machine change.
type view struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	dirty bool
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
		fmt.Fprintf(v.w, "%s  %-17s  %-6s  %-15s  %-10s  %s\n", m.LastSeen.Local().Format("15:04:05"), m.MAC, dash(m.Arch), dash(m.IP), m.Stage, dash(m.Node))
	}
}

// redraw repaints the table on a TTY when something changed.
func (v *view) redraw(ms []state.Machine) {
	if v.w == nil || !v.tty {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.dirty {
		return
	}
	v.dirty = false
	fmt.Fprint(v.w, "\x1b[H\x1b[2J")
	fmt.Fprint(v.w, Table(ms, time.Now()))
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
