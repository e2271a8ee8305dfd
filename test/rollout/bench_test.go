package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/rollout"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// The rollout benchmark of docs/benchmarks.md ("Rollout"). It is not part
// of the suite: it runs only with DODAI_ROLLOUT_BENCH=<repetitions>.
//
//	DODAI_ROLLOUT_BENCH=3 nice -n 10 go test -count=1 -v -timeout 60m -run TestRolloutBenchmark ./test/rollout
//
// DODAI_ROLLOUT_BENCH_WORKERS (default 50) and DODAI_ROLLOUT_BENCH_REBOOT
// (the fake nodes' reboot time R, default 1s) change the cluster.
//
// A cluster of 3 control planes and the workers is bootstrapped once; each
// run then upgrades every node to the other of two Talos versions
// (v1.11.5 ↔ v1.11.6: a staged config and an upgrade, one reboot per
// node), so every run does the same work. Per repetition, in an order that
// rotates from one repetition to the next:
//
//   - `dodai apply --yes --max-unavailable 1` (in-process, default poll
//     interval and bounds, as a user runs it, plan included);
//   - `dodai apply --yes --max-unavailable 10%`;
//   - the reference: talm's procedure, one node per call, sequentially,
//     each waited for (`talm apply` of the staged config then `talm
//     upgrade`, which waits for the node to come back and checks the
//     version it runs), with the configs rendered beforehand and polling
//     at dodai's interval: a lower bound for talm (no process start-up, no
//     drain, no Node check).
//
// Every run is checked: all nodes run the target version afterwards and no
// more workers were down at once than the batch allows.
func TestRolloutBenchmark(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("DODAI_ROLLOUT_BENCH"))
	if reps <= 0 {
		t.Skip("a benchmark: DODAI_ROLLOUT_BENCH=<repetitions> runs it (docs/benchmarks.md)")
	}
	workers := 50
	if v, err := strconv.Atoi(os.Getenv("DODAI_ROLLOUT_BENCH_WORKERS")); err == nil && v > 0 {
		workers = v
	}
	reboot := time.Second
	if v, err := time.ParseDuration(os.Getenv("DODAI_ROLLOUT_BENCH_REBOOT")); err == nil && v > 0 {
		reboot = v
	}
	nodes := 3 + workers
	perRun := time.Duration(nodes)*(reboot+2*time.Second) + 2*time.Minute
	ctx := testutil.Context(t, 5*time.Minute+time.Duration(3*reps)*perRun)

	versions := [2]string{"v1.11.5", "v1.11.6"}
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: workers, RebootDelay: reboot, Spec: spec{Talos: versions[0]}})
	start := time.Now()
	tc.bootstrap(ctx)
	t.Logf("bootstrap of %d nodes: %s; the test process now runs %d goroutines with %d open files (limit %s)", nodes,
		time.Since(start).Round(10*time.Millisecond), runtime.NumGoroutine(), openFiles(), fileLimit())

	type mode struct {
		name  string
		batch int // workers at once
		run   func(ctx context.Context, to string) (benchRun, error)
	}
	dodai := func(maxU string) func(context.Context, string) (benchRun, error) {
		return func(ctx context.Context, to string) (benchRun, error) {
			s := tc.spec
			s.Talos = to
			tc.write(s)
			t0 := time.Now()
			code, out, errOut := tc.dodai(ctx, "apply", "--yes", "-o", "json", "--max-unavailable", maxU, "--network", tc.Net)
			wall := time.Since(t0)
			if code != 0 {
				return benchRun{}, fmt.Errorf("dodai apply --max-unavailable %s: exit %d\n%s\n%s", maxU, code, out, errOut)
			}
			var res rollout.Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				return benchRun{}, fmt.Errorf("apply -o json: %v\n%s", err, out)
			}
			r := benchRun{wall: wall, planned: wall - res.Elapsed}
			for _, n := range res.Nodes {
				r.nodeTimes = append(r.nodeTimes, n.Took)
			}
			if os.Getenv("DODAI_ROLLOUT_BENCH_STEPS") != "" {
				for _, n := range res.Nodes {
					var steps []string
					for _, s := range n.Steps {
						steps = append(steps, fmt.Sprintf("%s %s", s.Step, s.Took.Round(time.Millisecond)))
					}
					t.Logf("%s: %s", n.Name, strings.Join(steps, ", "))
				}
			}
			return r, nil
		}
	}
	ten, err := rollout.MaxUnavailable("10%", workers)
	if err != nil {
		t.Fatal(err)
	}
	modes := []mode{
		{"dodai --max-unavailable 1", 1, dodai("1")},
		{"dodai --max-unavailable 10%", ten, dodai("10%")},
		{"reference (one node per call)", 1, func(ctx context.Context, to string) (benchRun, error) {
			s := tc.spec
			s.Talos = to
			tc.write(s)
			return tc.talmLoop(ctx, 250*time.Millisecond)
		}},
	}
	results := make([][]benchRun, len(modes))
	current := 0
	for rep := range reps {
		for k := range modes {
			i := (k + rep) % len(modes)
			m := modes[i]
			current = 1 - current
			to := versions[current]
			load0 := loadavg()
			since := time.Now()
			r, err := m.run(ctx, to)
			if err != nil {
				t.Fatalf("repetition %d, %s: %v", rep+1, m.name, err)
			}
			r.load = load0 + " → " + loadavg()
			for _, name := range tc.Names {
				if v := tc.Nodes[name].TalosVersion(); v != to {
					t.Fatalf("repetition %d, %s: %s runs %s, want %s", rep+1, m.name, name, v, to)
				}
			}
			spans := tc.downtimes("Upgrade", since)
			if len(spans) != nodes {
				t.Fatalf("repetition %d, %s: %d upgrades, want %d", rep+1, m.name, len(spans), nodes)
			}
			if o := maxOverlap(spans, tc.Names[3:]); o > m.batch {
				t.Fatalf("repetition %d, %s: %d workers down at once, batch %d", rep+1, m.name, o, m.batch)
			} else {
				r.overlap = o
			}
			if o := maxOverlap(spans, tc.Names[:3]); o != 1 {
				t.Fatalf("repetition %d, %s: %d control planes down at once", rep+1, m.name, o)
			}
			results[i] = append(results[i], r)
			t.Logf("repetition %d, %s (→ %s): %s (plan %s), at most %d workers down at once, load %s", rep+1, m.name, to,
				r.wall.Round(10*time.Millisecond), r.planned.Round(10*time.Millisecond), r.overlap, r.load)
		}
	}

	t.Logf("after the runs: %d goroutines, %d open files", runtime.NumGoroutine(), openFiles())

	// The summary: the median and the best run per mode.
	var b strings.Builder
	fmt.Fprintf(&b, "3 control planes + %d workers, R = %s, %d repetitions (median / best):\n", workers, reboot, reps)
	fmt.Fprintf(&b, "| | wall | bound 3R + ⌈%d/batch⌉R | wall − bound | overhead per node (wall − %d·R)/%d | node time − R (median node) |\n", workers, nodes, nodes)
	var refMedian time.Duration
	for i, m := range modes {
		rs := results[i]
		walls := make([]time.Duration, len(rs))
		for j, r := range rs {
			walls[j] = r.wall
		}
		med, best := median(walls), slices.Min(walls)
		slots := 3 + int(math.Ceil(float64(workers)/float64(m.batch)))
		bound := time.Duration(slots) * reboot
		// Reboot time serialised in the run: every node's R for one node
		// at a time, the bound's slots for batches.
		serial := time.Duration(nodes) * reboot
		if m.batch > 1 {
			serial = bound
		}
		var nodeOver []time.Duration
		for _, r := range rs {
			for _, d := range r.nodeTimes {
				nodeOver = append(nodeOver, d-reboot)
			}
		}
		nodeCol := "–"
		if len(nodeOver) > 0 {
			nodeCol = fmt.Sprintf("%.2f s", median(nodeOver).Seconds())
		}
		fmt.Fprintf(&b, "| %s | %.1f / %.1f s | %.0f s | %.1f / %.1f s | %.3f / %.3f s | %s |\n", m.name, med.Seconds(), best.Seconds(), bound.Seconds(),
			(med - bound).Seconds(), (best - bound).Seconds(),
			(med-serial).Seconds()/float64(slotsOrNodes(m.batch, slots, nodes)), (best-serial).Seconds()/float64(slotsOrNodes(m.batch, slots, nodes)), nodeCol)
		if i == 2 {
			refMedian = med
		}
	}
	for i, m := range modes[:2] {
		fmt.Fprintf(&b, "reference / %s (median): %.2f×\n", m.name, refMedian.Seconds()/median(wallsOf(results[i])).Seconds())
	}
	t.Log("\n" + b.String())
}

type benchRun struct {
	wall      time.Duration
	planned   time.Duration // apply's time before the rollout (plan, order)
	nodeTimes []time.Duration
	overlap   int
	load      string
}

// slotsOrNodes is what the overhead is divided by: the nodes when they go
// one at a time, the bound's slots when workers go in batches.
func slotsOrNodes(batch, slots, nodes int) int {
	if batch > 1 {
		return slots
	}
	return nodes
}

func wallsOf(rs []benchRun) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = r.wall
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// talmLoop is the reference: talm's procedure, one node per call in the
// file's order, each waited for before the next. The configs are rendered
// before the clock starts (talm renders them with `talm template`); then
// per node: apply the config staged, start the upgrade, poll the node
// until it answers with a new boot ID, and check the Talos version it runs
// (what `talm upgrade` checks).
func (tc *testCluster) talmLoop(ctx context.Context, interval time.Duration) (benchRun, error) {
	d, err := clusterdir.Open(tc.Dir)
	if err != nil {
		return benchRun{}, err
	}
	if err := d.Err(); err != nil {
		return benchRun{}, err
	}
	r, err := machineconfig.New(d.Source)
	if err != nil {
		return benchRun{}, err
	}
	talosconfig, err := r.Talosconfig()
	if err != nil {
		return benchRun{}, err
	}
	bst, err := state.ReadBootstrap(d.Source.Layout().BootstrapState())
	if err != nil {
		return benchRun{}, err
	}
	target, err := plan.TargetImage(d.Source.Cluster.Spec)
	if err != nil {
		return benchRun{}, err
	}
	type job struct {
		name, addr string
		data       []byte
	}
	var jobs []job
	for i := range d.Source.Cluster.Spec.Nodes {
		n := &d.Source.Cluster.Spec.Nodes[i]
		addr := plan.NodeAddress(n, bst)
		c, err := plan.Connect(ctx, talosconfig, addr, tc.Port)
		if err != nil {
			return benchRun{}, err
		}
		f, err := plan.ReadFacts(ctx, c)
		c.Close()
		if err != nil {
			return benchRun{}, fmt.Errorf("%s: %w", n.Name, err)
		}
		want, err := plan.Desired(r, n, f, plan.StageNode)
		if err != nil {
			return benchRun{}, err
		}
		data, err := plan.Encode(want)
		if err != nil {
			return benchRun{}, err
		}
		jobs = append(jobs, job{n.Name, addr, data})
	}

	connect := func(addr string) (*client.Client, error) { return plan.Connect(ctx, talosconfig, addr, tc.Port) }
	start := time.Now()
	for _, j := range jobs {
		c, err := connect(j.addr)
		if err != nil {
			return benchRun{}, err
		}
		boot, err := readBootID(ctx, c)
		if err == nil {
			_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: j.data, Mode: machine.ApplyConfigurationRequest_STAGED})
		}
		if err == nil {
			_, err = c.Upgrade(ctx, target.Installer, false, false)
		}
		c.Close()
		if err != nil {
			return benchRun{}, fmt.Errorf("%s: %w", j.name, err)
		}
		for {
			select {
			case <-ctx.Done():
				return benchRun{}, fmt.Errorf("%s did not come back: %w", j.name, ctx.Err())
			case <-time.After(interval):
			}
			c, err := connect(j.addr)
			if err != nil {
				continue
			}
			b, err := readBootID(ctx, c)
			if err != nil || b == boot {
				c.Close()
				continue
			}
			v, err := c.Version(ctx)
			c.Close()
			if err != nil {
				continue
			}
			if got := v.GetMessages()[0].GetVersion().GetTag(); got != target.Version {
				return benchRun{}, fmt.Errorf("%s runs %s after the upgrade, want %s", j.name, got, target.Version)
			}
			break
		}
	}
	return benchRun{wall: time.Since(start)}, nil
}

func readBootID(ctx context.Context, c *client.Client) (string, error) {
	rd, err := c.Read(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	return strings.TrimSpace(string(b)), err
}

// openFiles counts the process's open file descriptors (sockets included).
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

func fileLimit() string {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return "?"
	}
	return strconv.FormatUint(l.Cur, 10)
}
