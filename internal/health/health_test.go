package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
)

// TestCheckNetboot: the netboot check reads the run file a running server
// writes and asks its HTTP server for /metrics; a server that is not
// running is no problem, one that runs and does not answer is.
func TestCheckNetboot(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
		}
	}))
	defer up.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer broken.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	// A PID that surely ended: a child that exited and was reaped.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead := child.Process.Pid

	for _, tc := range []struct {
		name string
		run  *state.NetbootRun // nil: no run file
		raw  string            // instead of run: the file's bytes
		want []Check
		in   string // part of the failure's detail
	}{
		{name: "never ran", want: nil},
		{name: "killed server left its file", run: &state.NetbootRun{PID: dead, URL: up.URL}, want: nil},
		{name: "answers", run: &state.NetbootRun{PID: os.Getpid(), URL: up.URL + "/"},
			want: []Check{{Area: AreaNetboot, Subject: "server", OK: true}}, in: "/metrics answers"},
		{name: "HTTP error", run: &state.NetbootRun{PID: os.Getpid(), URL: broken.URL},
			want: []Check{{Area: AreaNetboot, Subject: "server", Kind: NetbootDown}}, in: "500 Internal Server Error"},
		{name: "runs but does not answer", run: &state.NetbootRun{PID: os.Getpid(), URL: goneURL},
			want: []Check{{Area: AreaNetboot, Subject: "server", Kind: NetbootDown}}, in: "its HTTP server does not answer"},
		{name: "unreadable run file", raw: "{not json",
			want: []Check{{Area: AreaNetboot, Subject: "server", Kind: NetbootDown}}, in: "reading state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "netboot-run.json")
			switch {
			case tc.run != nil:
				if err := state.WriteJSON(path, tc.run); err != nil {
					t.Fatal(err)
				}
			case tc.raw != "":
				if err := os.WriteFile(path, []byte(tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := checkNetboot(context.Background(), Options{NetbootRunFile: path, Timeout: 5 * time.Second})
			if len(got) != len(tc.want) {
				t.Fatalf("checks %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.Area != w.Area || g.Subject != w.Subject || g.OK != w.OK || g.Kind != w.Kind || !strings.Contains(g.Detail, tc.in) {
					t.Fatalf("check %+v, want %+v with %q in the detail", g, w, tc.in)
				}
			}
		})
	}
	// No run file configured: nothing to check.
	if got := checkNetboot(context.Background(), Options{}); got != nil {
		t.Fatalf("no run file: %+v", got)
	}
}

func TestReadiness(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conds []corev1.NodeCondition
		ready bool
		why   string
	}{
		{"ready", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}, true, ""},
		{"not ready", []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue}, {Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "CNI not initialized"}},
			false, "Ready=False KubeletNotReady CNI not initialized"},
		{"unknown", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}, false, "Ready=Unknown NodeStatusUnknown"},
		{"no condition", nil, false, "no Ready condition"},
	} {
		ready, why := nodeReady(&corev1.Node{Status: corev1.NodeStatus{Conditions: tc.conds}})
		if ready != tc.ready || why != tc.why {
			t.Errorf("node %s: (%v, %q), want (%v, %q)", tc.name, ready, why, tc.ready, tc.why)
		}
	}
	for _, tc := range []struct {
		name  string
		pod   corev1.PodStatus
		ready bool
		why   string
	}{
		{"ready", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}, true, ""},
		{"crashing", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [kube-apiserver]"}}},
			false, "Running ContainersNotReady containers with unready status: [kube-apiserver]"},
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, false, "Pending, no Ready condition"},
	} {
		ready, why := podReady(&corev1.Pod{Status: tc.pod})
		if ready != tc.ready || why != tc.why {
			t.Errorf("pod %s: (%v, %q), want (%v, %q)", tc.name, ready, why, tc.ready, tc.why)
		}
	}
}

// TestRunAndWait: with no Kubernetes client and a node never installed,
// the report names both failures (each with its kind, in area order);
// Wait returns the last unhealthy report once its context ends, having
// reported progress for each round.
func TestRunAndWait(t *testing.T) {
	src := &cluster.Source{Cluster: &cluster.Cluster{Spec: cluster.Spec{Nodes: []cluster.Node{{Name: "cp1", Role: cluster.RoleControlPlane}}}}}
	o := Options{Source: src, KubeErr: errNoKubeconfig}
	rep := Run(context.Background(), o)
	if rep.Healthy {
		t.Fatalf("healthy without an API: %+v", rep)
	}
	kinds := rep.Kinds()
	if len(kinds) != 2 || kinds[0] != KubernetesAPIDown || kinds[1] != TalosUnreachable {
		t.Fatalf("kinds %v, want [%s %s]: %+v", kinds, KubernetesAPIDown, TalosUnreachable, rep.Checks)
	}
	if c := rep.Checks[0]; c.Area != AreaControlPlane || c.Detail != errNoKubeconfig.Error() {
		t.Fatalf("first check %+v, want the control plane's, saying why there is no client", c)
	}
	for _, c := range rep.Problems() {
		if c.OK || c.Kind == "" {
			t.Fatalf("problem without a kind: %+v", c)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rounds := 0
	last := Wait(ctx, o, 20*time.Millisecond, func(r *Report) { rounds++ })
	if last == nil || last.Healthy || rounds < 2 {
		t.Fatalf("Wait: report %+v after %d rounds, want the last unhealthy one after several", last, rounds)
	}
}

var errNoKubeconfig = os.ErrNotExist
