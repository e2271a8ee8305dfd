package netboot_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
)

// apiWrites is what the apiserver itself counted
// (apiserver_request_total on its /metrics): the write requests (POST,
// PUT, PATCH, APPLY, conflicts included) of dodai.dev's resources, by
// resource ("machines", "dhcpleases"). Counted by the apiserver, it also
// covers writes of a boot server that was killed since.
func apiWrites(t *testing.T, kc *incltest.Cluster) map[string]float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(kc.REST)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading the apiserver's metrics: %v", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `group="dodai.dev"`) {
			continue
		}
		labels, value, ok := strings.Cut(strings.TrimPrefix(line, "apiserver_request_total{"), "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				l[k] = strings.Trim(v, `"`)
			}
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "APPLY":
		default:
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("apiserver metric %q: %v", line, err)
		}
		out[l["resource"]] += v
	}
	return out
}

// settledWrites waits until the apiserver's write counts of dodai.dev
// resources stood still for still (the boot servers write Machines behind
// the handshakes), bounded to two minutes, and returns them.
func settledWrites(t *testing.T, kc *incltest.Cluster, still time.Duration) map[string]float64 {
	t.Helper()
	w := apiWrites(t, kc)
	since := time.Now()
	for deadline := time.Now().Add(2 * time.Minute); time.Since(since) < still && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		n := apiWrites(t, kc)
		if n["machines"] != w["machines"] || n["dhcpleases"] != w["dhcpleases"] {
			w, since = n, time.Now()
		}
	}
	return w
}

// pivotedCopy copies the cluster directory dir and runs `dodai pivot` on
// the copy into namespace ns of kc, so that `dodai status netboot -C`
// the copy reads the cluster (the in-cluster servers of the test keep
// using dir, which they never write).
func pivotedCopy(t *testing.T, dir string, kc *incltest.Cluster, ns string) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "pivoted")
	if out, err := runOut("cp", "-a", dir, cp); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(cp, cluster.KubeconfigFile), kc.Env.KubeconfigBytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := dodaiCLI(t, "pivot", "-C", cp, "--namespace", ns); err != nil {
		t.Fatalf("dodai pivot: %v\n%s", err, out)
	}
	return cp
}

// dodaiCLI runs one dodai command in this process.
func dodaiCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code := cli.Run(ctx, args, strings.NewReader(""), &out, &errOut); code != 0 {
		return out.String(), fmt.Errorf("exit %d: %s", code, errOut.String())
	}
	return out.String(), nil
}

// statusReplicas runs `dodai status netboot` on a pivoted directory until
// want holds for the replica lines it prints (server name → the line),
// bounded to d; it returns the last output.
func statusReplicas(t *testing.T, dir string, d time.Duration, what string, want func(map[string]string) bool) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(d); ; time.Sleep(time.Second) {
		var err error
		if out, err = dodaiCLI(t, "status", "netboot", "-C", dir); err != nil {
			t.Fatalf("dodai status netboot: %v\n%s", err, out)
		}
		lines := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 5 && strings.HasPrefix(f[1], "10.99.") {
				lines[f[0]] = l
			}
		}
		if want(lines) {
			return out
		}
		if time.Now().After(deadline) {
			t.Errorf("dodai status netboot: want %s, got:\n%s", what, out)
			return out
		}
	}
}
