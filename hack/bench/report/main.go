// Command report turns the JSON lines the benchmark scripts in hack/bench
// write (one line per run) into the markdown tables of docs/benchmarks.md:
// per benchmark and group, every server's median and best over the
// repetitions, the ratios of the first server to each other one, and the
// load average during the runs.
//
// A line looks like
//
//	{"bench":"dhcp","group":"c=32","server":"dodai","rep":3,"load1":2.1,"m":{"handshakes_s":9800,"p99_ms":4.1}}
//
// Metrics whose name ends in _s (per second) or _mb_s are "higher is
// better"; all others (times, latencies, CPU, memory) "lower is better".
// The first metric of a line is the one the ratios are computed for.
//
//	usage: report FILE.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

type run struct {
	Bench  string             `json:"bench"`
	Group  string             `json:"group"`
	Server string             `json:"server"`
	Rep    int                `json:"rep"`
	Load1  float64            `json:"load1"`
	M      map[string]float64 `json:"m"`
	order  []string           // metric names in the order of the line
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report FILE.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	runs, err := read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(render(runs))
}

func read(r io.Reader) ([]run, error) {
	var out []run
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var x run
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		x.order = metricOrder(line)
		out = append(out, x)
	}
	return out, sc.Err()
}

// metricOrder returns the keys of the "m" object in the order written.
func metricOrder(line string) []string {
	dec := json.NewDecoder(strings.NewReader(line))
	depth, inM := 0, false
	var keys []string
	expectKey := false
	for {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		switch v := t.(type) {
		case json.Delim:
			switch v {
			case '{':
				depth++
				expectKey = true
			case '}':
				if depth == 2 {
					inM = false
				}
				depth--
				expectKey = depth >= 1
			}
		case string:
			if !expectKey {
				expectKey = true
				continue
			}
			if depth == 1 && v == "m" {
				inM = true
			} else if depth == 2 && inM {
				keys = append(keys, v)
			}
			expectKey = false
		default:
			expectKey = true
		}
	}
}

func higherIsBetter(metric string) bool {
	return strings.HasSuffix(metric, "_s") || strings.HasSuffix(metric, "_mb_s")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func best(v []float64, metric string) float64 {
	if higherIsBetter(metric) {
		return slices.Max(v)
	}
	return slices.Min(v)
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func render(runs []run) string {
	var b strings.Builder
	type key struct{ bench, group string }
	var keys []key
	by := map[key]map[string][]run{}
	servers := map[key][]string{}
	for _, r := range runs {
		k := key{r.Bench, r.Group}
		if by[k] == nil {
			by[k] = map[string][]run{}
			keys = append(keys, k)
		}
		if by[k][r.Server] == nil {
			servers[k] = append(servers[k], r.Server)
		}
		by[k][r.Server] = append(by[k][r.Server], r)
	}
	for _, k := range keys {
		svs := servers[k]
		first := by[k][svs[0]][0]
		metrics := first.order
		fmt.Fprintf(&b, "\n### %s, %s\n\n", k.bench, k.group)
		fmt.Fprintf(&b, "| server | runs |")
		for _, m := range metrics {
			fmt.Fprintf(&b, " %s median / best |", m)
		}
		b.WriteString("\n|---|---|" + strings.Repeat("---|", len(metrics)) + "\n")
		values := func(s, m string) []float64 {
			var v []float64
			for _, r := range by[k][s] {
				if x, ok := r.M[m]; ok {
					v = append(v, x)
				}
			}
			return v
		}
		for _, s := range svs {
			fmt.Fprintf(&b, "| %s | %d |", s, len(by[k][s]))
			for _, m := range metrics {
				v := values(s, m)
				if len(v) == 0 {
					b.WriteString(" – |")
					continue
				}
				fmt.Fprintf(&b, " %s / %s |", num(median(v)), num(best(v, m)))
			}
			b.WriteString("\n")
		}
		if len(metrics) > 0 {
			// Ratios of every dodai variant to every other server, for the
			// first metric, oriented so that > 1 means dodai is better.
			m := metrics[0]
			wrote := false
			for _, d := range svs {
				if !strings.HasPrefix(d, "dodai") {
					continue
				}
				a := values(d, m)
				for _, s := range svs {
					o := values(s, m)
					if strings.HasPrefix(s, "dodai") || len(a) == 0 || len(o) == 0 || median(o) == 0 || median(a) == 0 {
						continue
					}
					rm, rb := median(a)/median(o), best(a, m)/best(o, m)
					if !higherIsBetter(m) {
						rm, rb = median(o)/median(a), best(o, m)/best(a, m)
					}
					if !wrote {
						fmt.Fprintf(&b, "\nRatios (%s; above 1 means dodai is better):\n", m)
						wrote = true
					}
					fmt.Fprintf(&b, "- %s / %s: **%.2f×** median, %.2f× best\n", d, s, rm, rb)
				}
			}
		}
		var loads []float64
		for _, s := range svs {
			for _, r := range by[k][s] {
				loads = append(loads, r.Load1)
			}
		}
		sort.Float64s(loads)
		fmt.Fprintf(&b, "\nLoad average (1 min) at the start of the runs: %.1f–%.1f, median %.1f.\n", loads[0], loads[len(loads)-1], median(loads))
	}
	return b.String()
}
