package rollout_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// TestPlan reads a running cluster of 3 control planes and a worker and
// checks what plan says for each kind of change in the cluster file, and
// that plan itself changes nothing on the nodes.
func TestPlan(t *testing.T) {
	ctx := testutil.Context(t, 6*time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 1, RebootDelay: 50 * time.Millisecond,
		Spec: spec{Kubernetes: "v1.32.3", Extensions: []string{"siderolabs/drbd"}}})
	tc.bootstrap(ctx)
	base := tc.spec
	start := time.Now()

	// Freshly bootstrapped: nothing to do, exit 0.
	code, out, errOut := tc.dodai(ctx, "plan")
	if code != 0 || !strings.Contains(out, "No changes: the cluster matches cluster.yaml.") {
		t.Fatalf("plan after bootstrap: exit %d\n%s\n%s", code, out, errOut)
	}
	code, p := tc.planJSON(ctx)
	if code != 0 || len(p.Nodes) != 4 || p.Etcd == nil || p.Etcd.Members != 3 || p.Etcd.Healthy != 3 || p.Etcd.Leader == "" {
		t.Fatalf("plan -o json after bootstrap: exit %d %+v etcd %+v", code, p, p.Etcd)
	}
	for _, n := range p.Nodes {
		if n.State != plan.StateUnchanged || n.TalosVersion != "v1.11.5" || strings.Join(n.Extensions, ",") != "siderolabs/drbd" {
			t.Fatalf("node %s after bootstrap: %+v", n.Name, n)
		}
	}

	t.Run("nodes added and unknown", func(t *testing.T) {
		stranger := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stranger"}}
		if _, err := tc.kube.Client.CoreV1().Nodes().Create(ctx, stranger, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tc.kube.Client.CoreV1().Nodes().Delete(ctx, "stranger", metav1.DeleteOptions{}) }()
		s := base
		s.Extra = []string{"w9"}
		tc.write(s)
		defer tc.write(base)
		code, out, errOut := tc.dodai(ctx, "plan")
		if code != 2 || !strings.Contains(out, "install (dodai bootstrap --node w9)") ||
			!strings.Contains(out, "Nodes in the cluster but not in cluster.yaml (reported, never removed): stranger") {
			t.Fatalf("plan with a new node and an unknown one: exit %d\n%s\n%s", code, out, errOut)
		}
		_, p := tc.planJSON(ctx)
		if n := p.Node("w9"); n == nil || n.State != plan.StateNotInstalled || strings.Join(p.Unknown, ",") != "stranger" {
			t.Fatalf("plan -o json: %+v unknown %v", n, p.Unknown)
		}
	})

	t.Run("patch without reboot", func(t *testing.T) {
		s := base
		s.Patches = "- machine:\n    sysctls:\n      net.core.somaxconn: \"65535\""
		tc.write(s)
		defer tc.write(base)
		code, out, _ := tc.dodai(ctx, "plan")
		if code != 2 || strings.Count(out, "config (no reboot)") != 4 || !strings.Contains(out, `+        net.core.somaxconn: "65535"`) {
			t.Fatalf("plan of a patch: exit %d\n%s", code, out)
		}
		tc.noSecrets(out)
		_, p := tc.planJSON(ctx)
		for _, n := range p.Nodes {
			if n.Config == nil || n.Config.Mode != "no reboot" || n.Config.TalosAnswer != "Applied configuration without a reboot" || n.Upgrade != nil {
				t.Fatalf("plan of %s: %+v %+v", n.Name, n, n.Config)
			}
		}
	})

	t.Run("patch that needs a reboot", func(t *testing.T) {
		s := base
		s.Patches = "- machine:\n    env:\n      http_proxy: http://proxy.example:3128"
		tc.write(s)
		defer tc.write(base)
		code, out, _ := tc.dodai(ctx, "plan")
		if code != 2 || strings.Count(out, "config (reboot)") != 4 || !strings.Contains(out, "+        http_proxy: http://proxy.example:3128") {
			t.Fatalf("plan of a reboot patch: exit %d\n%s", code, out)
		}
	})

	t.Run("Talos upgrade", func(t *testing.T) {
		s := base
		s.Talos = "v1.11.6"
		tc.write(s)
		defer tc.write(base)
		code, out, _ := tc.dodai(ctx, "plan")
		if code != 2 || strings.Count(out, "upgrade v1.11.5 → v1.11.6") != 4 {
			t.Fatalf("plan of an upgrade: exit %d\n%s", code, out)
		}
		_, p := tc.planJSON(ctx)
		for _, n := range p.Nodes {
			u := n.Upgrade
			if u == nil || !strings.HasPrefix(u.Image, "factory.talos.dev/metal-installer/"+u.ToSchematic+":v1.11.6") ||
				u.FromSchematic != u.ToSchematic || strings.Join(u.Extensions, ",") != "siderolabs/drbd" || len(n.Refusals) > 0 {
				t.Fatalf("plan of %s: %+v", n.Name, u)
			}
		}
	})

	t.Run("extension added", func(t *testing.T) {
		s := base
		s.Extensions = []string{"siderolabs/drbd", "siderolabs/zfs"}
		tc.write(s)
		defer tc.write(base)
		code, out, _ := tc.dodai(ctx, "plan")
		if code != 2 || strings.Count(out, "upgrade v1.11.5 (new image) [+siderolabs/zfs]") != 4 {
			t.Fatalf("plan of an extension change: exit %d\n%s", code, out)
		}
	})

	t.Run("refused: upgrade drops a listed extension", func(t *testing.T) {
		s := base
		s.Talos = "v1.11.6"
		s.Installer = "ghcr.io/siderolabs/installer:v1.11.6"
		tc.write(s)
		defer tc.write(base)
		code, out, errOut := tc.dodai(ctx, "plan")
		if code != 1 || strings.Count(out, "would drop extension siderolabs/drbd") != 4 || !strings.Contains(errOut, "the plan is refused") {
			t.Fatalf("plan dropping an extension: exit %d\n%s\n%s", code, out, errOut)
		}
	})

	t.Run("refused: Kubernetes skips a minor", func(t *testing.T) {
		s := base
		s.Kubernetes = "v1.34.1"
		tc.write(s)
		defer tc.write(base)
		code, out, errOut := tc.dodai(ctx, "plan")
		if code != 1 || !strings.Contains(errOut, "cluster.yaml:7:22: spec.kubernetesVersion: Kubernetes v1.32.3 → v1.34.1 skips v1.33") {
			t.Fatalf("plan skipping a minor: exit %d\n%s\n%s", code, out, errOut)
		}
		t.Logf("plan skipping a minor:\n%s\n%s", out, errOut)
	})

	t.Run("Kubernetes upgrade", func(t *testing.T) {
		s := base
		s.Kubernetes = "v1.33.5"
		tc.write(s)
		defer tc.write(base)
		code, out, errOut := tc.dodai(ctx, "plan")
		if code != 2 || !strings.Contains(out, "v1.32.3 → v1.33.5: control-plane components node by node, then the kubelets") {
			t.Fatalf("plan of a Kubernetes upgrade: exit %d\n%s\n%s", code, out, errOut)
		}
		_, p := tc.planJSON(ctx)
		if p.Kubernetes == nil || p.Kubernetes.From != "v1.32.3" || p.Kubernetes.To != "v1.33.5" {
			t.Fatalf("plan -o json: %+v", p.Kubernetes)
		}
		for _, n := range p.Nodes {
			k := n.Kubernetes
			if k == nil || k.Kubelet == nil || k.Kubelet.String() != "v1.32.3 → v1.33.5" || (n.Role == "controlplane") != (k.ControlPlane != nil) {
				t.Fatalf("plan of %s: %+v", n.Name, k)
			}
		}
		// The apiserver's deprecated-API metric was read (a failure to
		// read it is a warning).
		for _, w := range p.Warnings {
			if strings.Contains(w, "metrics") {
				t.Fatalf("warning: %s", w)
			}
		}
	})

	t.Run("refused: etcd unhealthy", func(t *testing.T) {
		s := base
		s.Patches = "- machine:\n    sysctls:\n      net.core.somaxconn: \"65535\""
		tc.write(s)
		defer tc.write(base)
		tc.Group.SetEtcdDown(tc.Nodes["cp2"], true)
		defer tc.Group.SetEtcdDown(tc.Nodes["cp2"], false)
		code, out, errOut := tc.dodai(ctx, "plan")
		if code != 1 || !strings.Contains(errOut, "etcd is not healthy (2 of 3 members healthy)") || !strings.Contains(errOut, "cp2") {
			t.Fatalf("plan with etcd down on cp2: exit %d\n%s\n%s", code, out, errOut)
		}
	})

	// plan only read: no node was changed, rebooted or upgraded.
	for _, name := range tc.Names {
		for _, c := range tc.Nodes[name].Calls() {
			if c.Time.After(start) && (c.Method == "Upgrade" || c.Method == "Boot" || c.Method == "ApplyConfiguration" && !c.DryRun) {
				t.Fatalf("plan called %s on %s", c.Method, name)
			}
		}
	}
	if code, out, _ := tc.dodai(ctx, "plan"); code != 0 {
		t.Fatalf("plan at the end: exit %d\n%s", code, out)
	}
}
