package rollout

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Progress shows the rollout as it happens: on a terminal a live table of
// the nodes being worked on (node, step, elapsed) with finished steps
// scrolling above it; otherwise one log line per step start and end.
type Progress interface {
	Start(node, step string)
	End(node, step string, err error)
	Close()
}

// NewProgress returns the live view when live is set, else log lines.
func NewProgress(w io.Writer, live bool, log *slog.Logger) Progress {
	if !live {
		return &logProgress{log: log, started: map[string]time.Time{}}
	}
	p := &liveProgress{w: w, active: map[string]activeStep{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go p.loop()
	return p
}

func key(node, step string) string { return node + "\x00" + step }

type logProgress struct {
	mu      sync.Mutex
	log     *slog.Logger
	started map[string]time.Time
}

func (p *logProgress) Start(node, step string) {
	p.mu.Lock()
	p.started[key(node, step)] = time.Now()
	p.mu.Unlock()
	p.log.Info("step", "node", node, "step", step)
}

func (p *logProgress) End(node, step string, err error) {
	p.mu.Lock()
	took := time.Since(p.started[key(node, step)]).Round(time.Millisecond)
	delete(p.started, key(node, step))
	p.mu.Unlock()
	if err != nil {
		p.log.Error("step failed", "node", node, "step", step, "took", took, "error", err)
		return
	}
	p.log.Info("step done", "node", node, "step", step, "took", took)
}

func (p *logProgress) Close() {}

type activeStep struct {
	step  string
	start time.Time
}

type liveProgress struct {
	mu      sync.Mutex
	w       io.Writer
	active  map[string]activeStep
	lines   []string // finished steps not printed yet
	drawn   int      // lines of the last table
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func (p *liveProgress) Start(node, step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active[node] = activeStep{step: step, start: time.Now()}
}

func (p *liveProgress) End(node, step string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.active[node]
	delete(p.active, node)
	took := time.Since(a.start).Round(100 * time.Millisecond)
	if err != nil {
		p.lines = append(p.lines, fmt.Sprintf("✗ %-12s %-20s %8s  %v", node, step, took, err))
		return
	}
	p.lines = append(p.lines, fmt.Sprintf("✓ %-12s %-20s %8s", node, step, took))
}

func (p *liveProgress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.draw(false)
		case <-p.done:
			p.draw(true)
			return
		}
	}
}

// draw rewrites the table under the finished lines (ANSI: cursor up,
// clear to the end of the screen).
func (p *liveProgress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", p.drawn)
	}
	for _, l := range p.lines {
		b.WriteString(l + "\n")
	}
	p.lines = nil
	p.drawn = 0
	if !final && len(p.active) > 0 {
		nodes := slices.Sorted(func(yield func(string) bool) {
			for n := range p.active {
				if !yield(n) {
					return
				}
			}
		})
		for _, n := range nodes {
			a := p.active[n]
			fmt.Fprintf(&b, "  %-12s %-20s %8s\n", n, a.step, time.Since(a.start).Round(100*time.Millisecond))
			p.drawn++
		}
	}
	_, _ = io.WriteString(p.w, b.String())
}

func (p *liveProgress) Close() {
	p.once.Do(func() { close(p.done) })
	<-p.stopped
}
