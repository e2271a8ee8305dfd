package plan

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// running is what one node runs in a version test ("" = unreachable).
type running struct{ talos, kube string }

// runningConfig is a machine config with the Kubernetes images of kube.
func runningConfig(kube string) *container.Container {
	return container.NewV1Alpha1(&v1alpha1.Config{
		ConfigVersion: "v1alpha1",
		MachineConfig: &v1alpha1.MachineConfig{MachineKubelet: &v1alpha1.KubeletConfig{KubeletImage: "ghcr.io/siderolabs/kubelet:" + kube}},
		ClusterConfig: &v1alpha1.ClusterConfig{APIServerConfig: &v1alpha1.APIServerConfig{ContainerImage: "registry.k8s.io/kube-apiserver:" + kube}},
	})
}

const versionsFile = `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  talosVersion: %s
  kubernetesVersion: %s
  endpoint: https://10.0.0.1:6443
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:01"], address: 10.0.0.1/24}
    - {name: w1, role: worker, macs: ["52:54:00:00:00:02"], address: 10.0.0.2/24}
`

// TestVersionRules: the plan applies compat's rules to what the nodes run
// and the file wants; bad changes are refused naming the file's field and
// the step to take instead, good ones get their order.
func TestVersionRules(t *testing.T) {
	for _, tc := range []struct {
		name        string
		talos, kube string     // the file's
		cp, w       running    // what the nodes run
		refusals    [][]string // substrings of each refusal, in order
		steps       []string
	}{
		{name: "converged", talos: "v1.11.5", kube: "v1.34.1", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"}},
		{name: "patch", talos: "v1.11.6", kube: "v1.34.2", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			steps: []string{"talos v1.11.5 → v1.11.6", "kubernetes v1.34.1 → v1.34.2"}},
		{name: "talos then kubernetes", talos: "v1.12.7", kube: "v1.35.4", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			steps: []string{"talos v1.11.5 → v1.12.7", "kubernetes v1.34.1 → v1.35.4"}},
		{name: "talos skips a minor", talos: "v1.13.9", kube: "v1.34.1", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			refusals: [][]string{{"cluster.yaml:5:17: spec.talosVersion: Talos v1.11.5 → v1.13.9 skips v1.12: ", "upgrade to the newest v1.12.x first", "(nodes running v1.11.5: cp1, w1)"}}},
		{name: "one node behind", talos: "v1.13.9", kube: "v1.34.1", cp: running{"v1.12.7", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			refusals: [][]string{{"spec.talosVersion: Talos v1.11.5 → v1.13.9 skips v1.12", "(nodes running v1.11.5: w1)"}}},
		{name: "node ahead, the other one step behind", talos: "v1.13.9", kube: "v1.35.4", cp: running{"v1.13.9", "v1.35.4"}, w: running{"v1.12.7", "v1.35.4"},
			steps: []string{"talos v1.12.7 → v1.13.9"}},
		{name: "kubernetes skips a minor", talos: "v1.13.9", kube: "v1.36.3", cp: running{"v1.13.9", "v1.34.1"}, w: running{"v1.13.9", "v1.34.1"},
			refusals: [][]string{{"cluster.yaml:6:22: spec.kubernetesVersion: Kubernetes v1.34.1 → v1.36.3 skips v1.35: Kubernetes upgrades one minor at a time; upgrade to the newest v1.35.x first"}}},
		{name: "both skip", talos: "v1.13.9", kube: "v1.36.3", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			refusals: [][]string{{"spec.kubernetesVersion: Kubernetes v1.34.1 → v1.36.3 skips v1.35"}, {"spec.talosVersion: Talos v1.11.5 → v1.13.9 skips v1.12"}}},
		{name: "kubernetes downgrade", talos: "v1.11.5", kube: "v1.33.6", cp: running{"v1.11.5", "v1.34.1"}, w: running{"v1.11.5", "v1.34.1"},
			refusals: [][]string{{"spec.kubernetesVersion: Kubernetes v1.34.1 → v1.33.6 is a downgrade"}}},
		{name: "talos downgrade of two minors", talos: "v1.11.5", kube: "v1.34.1", cp: running{"v1.13.9", "v1.34.1"}, w: running{"v1.13.9", "v1.34.1"},
			refusals: [][]string{{"spec.talosVersion: host version 1.13.9 is too new to downgrade to Talos 1.11.5"}}},
		{name: "only kubernetes-first is safe", talos: "v1.13.9", kube: "v1.31.0", cp: running{"v1.12.7", "v1.30.5"}, w: running{"v1.12.7", "v1.30.5"},
			refusals: [][]string{{"spec.talosVersion: Talos v1.13.9 does not run Kubernetes v1.30.5", "set spec.talosVersion back to v1.12.7 and apply spec.kubernetesVersion v1.31.0, then set spec.talosVersion to v1.13.9"}}},
		{name: "unreachable control plane: the worker's kubelet", talos: "v1.12.7", kube: "v1.35.4", w: running{"v1.11.5", "v1.34.1"},
			steps: []string{"talos v1.11.5 → v1.12.7", "kubernetes v1.34.1 → v1.35.4"}},
		{name: "nothing reachable", talos: "v1.13.9", kube: "v1.36.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, problems := cluster.Parse("cluster.yaml", fmt.Appendf(nil, versionsFile, tc.talos, tc.kube))
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			o := Options{Source: src}
			p := &Plan{}
			var nodes []*cluster.Node
			var facts []*Facts
			for i, r := range []running{tc.cp, tc.w} {
				n := &src.Cluster.Spec.Nodes[i]
				nodes = append(nodes, n)
				np := &NodePlan{Name: n.Name, Role: n.Role}
				p.Nodes = append(p.Nodes, np)
				if r.talos == "" {
					facts = append(facts, nil)
					continue
				}
				facts = append(facts, &Facts{TalosVersion: r.talos, Config: runningConfig(r.kube)})
				if r.kube != tc.kube {
					np.Kubernetes = &NodeKubernetes{Kubelet: &VersionChange{From: r.kube, To: tc.kube}}
				}
			}
			o.kubernetes(context.Background(), p, nodes, facts)
			o.versions(p, facts)
			if len(p.Refusals) != len(tc.refusals) {
				t.Fatalf("refusals %q, want %d", p.Refusals, len(tc.refusals))
			}
			for i, want := range tc.refusals {
				for _, s := range want {
					if !strings.Contains(p.Refusals[i], s) {
						t.Errorf("refusal %q does not say %q", p.Refusals[i], s)
					}
				}
			}
			var got []string
			for _, s := range p.Steps {
				got = append(got, s.String())
			}
			if strings.Join(got, "; ") != strings.Join(tc.steps, "; ") {
				t.Errorf("steps %q, want %q", got, tc.steps)
			}
		})
	}
}
