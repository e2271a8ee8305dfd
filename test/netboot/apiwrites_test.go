package netboot_test

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

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
