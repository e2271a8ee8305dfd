package netboot_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/incluster/incltest"
)

// TestInClusterDHCPBenchmark measures DHCP handshakes per second of two
// `dodai netboot --in-cluster` replicas (apiserver-backed leases) against
// one `dodai netboot` with the file journal and against dnsmasq with its
// lease file (the configuration of hack/bench/lib/netboot-lab.sh),
// interleaved (the order reverses every repetition), with
// hack/bench/netboot-load at the same MAC count and concurrency, and the
// apiserver writes per handshake (from dodai_netboot_store_writes_total of
// both replicas). Not part of the suite: DODAI_INCLUSTER_BENCH=REPETITIONS
// runs it (docs/benchmarks.md has the command); DODAI_INCLUSTER_BENCH_MACS
// (default 1000) and DODAI_INCLUSTER_BENCH_C (default 32) set the load.
func TestInClusterDHCPBenchmark(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("DODAI_INCLUSTER_BENCH"))
	if reps <= 0 {
		t.Skip("benchmark: set DODAI_INCLUSTER_BENCH=REPETITIONS")
	}
	need(t, "ip", "curl", "dnsmasq")
	n, c := envInt("DODAI_INCLUSTER_BENCH_MACS", 1000), envInt("DODAI_INCLUSTER_BENCH_C", 32)
	kc := incltest.Start(t)
	work := t.TempDir()
	load := buildLoad(t, work)
	dir := wideCluster(t, "nbbench")
	assets := fakeAssets(t, 1<<20)
	lab := newLANLab(t, 2, apiReach(t, kc, work))
	srv, cl := lab.servers, lab.client

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	type sample struct {
		kind                 string
		perSec, writes, load float64
		ok                   int
	}
	var samples []sample
	inCluster := func(rep int) sample {
		// A fresh namespace per repetition: every MAC is new to the store.
		ns := fmt.Sprintf("bench-%d", rep)
		if err := kc.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		var ps []*proc
		for i, s := range srv {
			ps = append(ps, startDodai(t, s, filepath.Join(work, fmt.Sprintf("ic-%d-%d.log", rep, i)), "--in-cluster", "--kubeconfig", kc.Env.Kubeconfig,
				"--namespace", ns, "--server-name", fmt.Sprintf("r%d", i), "-C", dir, "--interface", "eth0", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe"))
		}
		r, _ := runLoad(t, cl, load, filepath.Join(work, fmt.Sprintf("acks-ic-%d", rep)), n, c, nil)
		// The Machine writes go out behind the handshakes: count once
		// the counters stood still for two seconds.
		total := func() float64 {
			var w float64
			for i, s := range srv {
				w += scrape(t, s, fmt.Sprintf("http://10.99.0.%d:8080/metrics", i+1), "dodai_netboot_store_writes_total")
			}
			return w
		}
		writes, still := total(), 0
		for deadline := time.Now().Add(2 * time.Minute); still < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			if w := total(); w == writes {
				still++
			} else {
				writes, still = w, 0
			}
		}
		for _, p := range ps {
			stop(t, p)
		}
		return sample{"in-cluster (2 replicas)", r.PerSecond, writes / float64(max(r.OK, 1)), 0, r.OK}
	}
	file := func(rep int) sample {
		d := filepath.Join(work, fmt.Sprintf("file-%d", rep))
		if out, err := runOut("cp", "-a", dir, d); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		p := startDodai(t, srv[0], filepath.Join(work, fmt.Sprintf("file-%d.log", rep)), "-C", d, "--interface", "eth0", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe")
		r, _ := runLoad(t, cl, load, filepath.Join(work, fmt.Sprintf("acks-file-%d", rep)), n, c, nil)
		stop(t, p)
		return sample{"file journal (1 server)", r.PerSecond, 0, 0, r.OK}
	}
	// dnsmasq with its lease file (rewritten and fsynced per lease), as
	// hack/bench/netboot.sh runs it, on the same bridge in place of dodai.
	dnsmasq := func(rep int) sample {
		conf := filepath.Join(work, fmt.Sprintf("dnsmasq-%d.conf", rep))
		write(t, conf, fmt.Sprintf(`port=0
interface=eth0
bind-interfaces
dhcp-authoritative
dhcp-range=10.99.0.100,10.99.15.200,255.255.240.0,1h
dhcp-lease-max=100000
dhcp-leasefile=%s
no-ping
user=root
log-facility=-
`, filepath.Join(work, fmt.Sprintf("dnsmasq-%d.leases", rep))))
		log := filepath.Join(work, fmt.Sprintf("dnsmasq-%d.log", rep))
		p := srv[0].start(t, log, nil, "dnsmasq", "--keep-in-foreground", "--conf-file="+conf, "--pid-file="+filepath.Join(work, fmt.Sprintf("dnsmasq-%d.pid", rep)))
		waitLog(t, log, "DHCP, IP range", p, 10*time.Second)
		r, _ := runLoad(t, cl, load, filepath.Join(work, fmt.Sprintf("acks-dnsmasq-%d", rep)), n, c, nil)
		stop(t, p)
		return sample{"dnsmasq (lease file)", r.PerSecond, 0, 0, r.OK}
	}
	kinds := []string{"in-cluster (2 replicas)", "file journal (1 server)", "dnsmasq (lease file)"}
	for rep := 0; rep < reps; rep++ {
		runs := []func(int) sample{inCluster, file, dnsmasq}
		if rep%2 == 1 {
			slices.Reverse(runs)
		}
		for _, run := range runs {
			l := load1(t)
			s := run(rep)
			s.load = l
			samples = append(samples, s)
			t.Logf("rep %d %s: %.0f handshakes/s, %d/%d ACKed, %.2f apiserver writes per handshake, load %.1f", rep, s.kind, s.perSec, s.ok, n, s.writes, s.load)
		}
	}
	med := map[string]float64{}
	best := map[string]float64{}
	for _, kind := range kinds {
		var rates, writes, loads []float64
		for _, s := range samples {
			if s.kind == kind {
				rates, writes, loads = append(rates, s.perSec), append(writes, s.writes), append(loads, s.load)
			}
		}
		med[kind], best[kind] = median(rates), maxOf(rates)
		t.Logf("RESULT %s: median %.0f handshakes/s, best %.0f, writes/handshake median %.2f, load %.1f-%.1f (%d MACs, c=%d, %d repetitions)",
			kind, med[kind], best[kind], median(writes), slices.Min(loads), slices.Max(loads), n, c, len(rates))
	}
	for _, other := range kinds[1:] {
		t.Logf("RESULT in-cluster / %s: median %.2fx, best %.2fx", other, med[kinds[0]]/med[other], best[kinds[0]]/best[other])
	}
}

// load1 is the 1-minute load average.
func load1(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func runOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// scrape reads one counter from a server's /metrics (curl inside its
// namespace).
func scrape(t *testing.T, ns *netns, url, metric string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.cmd(ctx, "curl", "-sS", url).Output()
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == metric {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	t.Fatalf("%s has no %s", url, metric)
	return 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}
