package day2_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blang/semver/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/health"
	"github.com/dodai-dev/dodai/internal/state"
)

// healthy undoes the faults a test made and sets up what helm-controller
// reports on a healthy platform (the fake kubelets register the Nodes and
// run the control planes' mirror pods).
func (tc *testCluster) healthy(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	for name := range tc.Nodes {
		tc.setNode(ctx, t, name, true, kubeVersion)
		if strings.HasPrefix(name, "cp") {
			tc.restoreControlPlanePods(ctx, t, name)
		}
	}
	tc.setReleases(ctx, t, nil)
}

func row(out, area, subject, kind string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(area) + `\s+` + regexp.QuoteMeta(subject) + `\s+FAIL\s+` + regexp.QuoteMeta(kind) + `: `)
}

func TestHealth(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 3, 1)
	tc.healthy(t)

	code, out, errOut := tc.dodai(ctx, "health")
	if code != 0 || !strings.Contains(out, "healthy: ") {
		t.Fatalf("healthy cluster: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "health", out, errOut)
	for _, want := range []string{"etcd   quorum", "member cp1", "kube-apiserver on cp2", "kube-scheduler on cp3", "node            w1", "platform"} {
		if !strings.Contains(out, strings.Join(strings.Fields(want), " ")) && !regexp.MustCompile(strings.Join(strings.Fields(regexp.QuoteMeta(want)), `\s+`)).MatchString(out) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}

	// Each failure kind is named, all in one report.
	tc.Group.SetEtcdDown(tc.Nodes["cp2"], true)
	tc.setNode(ctx, t, "w1", false, kubeVersion)
	old := olderMinor(t, kubeVersion)
	tc.setNode(ctx, t, "cp3", true, old)
	// (The fake kubelet keeps its mirror pods Ready, as a kubelet whose
	// static pod runs; a component that is gone has no mirror pod.)
	if err := tc.Kube.Client.CoreV1().Pods("kube-system").Delete(ctx, "kube-apiserver-cp1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	tc.setReleases(ctx, t, map[string]bool{"cilium": true})
	code, out, errOut = tc.dodai(ctx, "health")
	if code != 1 {
		t.Fatalf("unhealthy cluster: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "health", out, errOut)
	for _, r := range []*regexp.Regexp{
		row(out, "etcd", "member cp2", health.EtcdMemberDown),
		row(out, "node", "w1", health.NodeNotReady),
		row(out, "node", "cp3", health.VersionSkew),
		row(out, "control-plane", "kube-apiserver on cp1", health.ControlPlaneDown),
		row(out, "platform", "cozy-cilium/cilium", health.ReleaseNotReady),
	} {
		if !r.MatchString(out) {
			t.Fatalf("no row %s:\n%s", r, out)
		}
	}
	if !strings.Contains(out, "kubelet "+old+", cluster file says "+kubeVersion) || !strings.Contains(errOut, "unhealthy: ") {
		t.Fatalf("detail:\n%s%s", out, errOut)
	}
	code, out, _ = tc.dodai(ctx, "health", "-o", "json")
	var rep health.Report
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.Healthy {
		t.Fatalf("json: %d %s", code, out)
	}
	want := []string{health.ControlPlaneDown, health.EtcdMemberDown, health.NodeNotReady, health.ReleaseNotReady, health.VersionSkew}
	slices.Sort(want)
	if !slices.Equal(rep.Kinds(), want) {
		t.Fatalf("kinds %v, want %v", rep.Kinds(), want)
	}

	// Extensions the file asks for and the nodes lack; a Talos version the
	// nodes do not run.
	b, _ := os.ReadFile(filepath.Join(tc.Dir, "cluster.yaml"))
	other := olderPatch(t, talosVersion)
	nb := strings.Replace(string(b), "  talosVersion: "+talosVersion+"\n", "  talosVersion: "+other+"\n  image:\n    extensions: [siderolabs/drbd]\n", 1)
	if err := os.WriteFile(filepath.Join(tc.Dir, "cluster.yaml"), []byte(nb), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ = tc.dodai(ctx, "health")
	if !row(out, "node", "w1", health.ExtensionMissing).MatchString(out) || !strings.Contains(out, "runs Talos "+talosVersion+", cluster file says "+other) {
		t.Fatalf("extensions and Talos version:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(tc.Dir, "cluster.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	// --wait: the problems are fixed while it waits.
	fixed := make(chan struct{})
	go func() {
		defer close(fixed)
		time.Sleep(time.Second)
		tc.Group.SetEtcdDown(tc.Nodes["cp2"], false)
		tc.healthy(t)
	}()
	start := time.Now()
	code, out, errOut = tc.dodai(ctx, "health", "--wait", "2m", "--poll-interval", "200ms")
	<-fixed
	if code != 0 || time.Since(start) < time.Second || !strings.Contains(errOut, "waiting for the cluster to be healthy") {
		t.Fatalf("--wait: exit %d after %s\n%s%s", code, time.Since(start), out, errOut)
	}

	// A running netboot server is checked; a dead one's HTTP is named.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "# metrics") })}
	go srv.Serve(l)
	run := state.NetbootRun{PID: os.Getpid(), URL: "http://" + l.Addr().String(), Started: time.Now()}
	if err := state.WriteJSON(cluster.At(tc.Dir).NetbootRun(), run); err != nil {
		t.Fatal(err)
	}
	code, out, _ = tc.dodai(ctx, "health")
	if code != 0 || !regexp.MustCompile(`(?m)^netboot\s+server\s+ok\s+pid \d+, http://127\.0\.0\.1:\d+/metrics answers`).MatchString(out) {
		t.Fatalf("netboot up: exit %d\n%s", code, out)
	}
	srv.Close()
	code, out, _ = tc.dodai(ctx, "health")
	if code != 1 || !row(out, "netboot", "server", health.NetbootDown).MatchString(out) {
		t.Fatalf("netboot down: exit %d\n%s", code, out)
	}
}

// olderMinor is the first release of the minor before v (v1.36.3 → v1.35.0).
func olderMinor(t testing.TB, v string) string {
	t.Helper()
	sv, err := semver.ParseTolerant(v)
	if err != nil || sv.Minor == 0 {
		t.Fatalf("version %q: %v", v, err)
	}
	return fmt.Sprintf("v%d.%d.0", sv.Major, sv.Minor-1)
}

// olderPatch is the patch release before v (v1.13.9 → v1.13.8).
func olderPatch(t testing.TB, v string) string {
	t.Helper()
	sv, err := semver.ParseTolerant(v)
	if err != nil || sv.Patch == 0 {
		t.Fatalf("version %q: %v", v, err)
	}
	return fmt.Sprintf("v%d.%d.%d", sv.Major, sv.Minor, sv.Patch-1)
}
