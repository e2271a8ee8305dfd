package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/blang/semver/v4"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Field paths of the cluster file the version rules name.
const (
	fieldTalos      = "spec.talosVersion"
	fieldKubernetes = "spec.kubernetesVersion"
)

// located prefixes a refusal with the cluster file's position of a field
// ("cluster.yaml:6:17: spec.talosVersion: …").
func (o Options) located(path string, err error) string {
	return o.Source.Problem(cluster.Error, path, "%v", err).String()
}

// versions checks the cluster-wide version change against compat's rules
// (internal/talos/compat, the same tables talosctl checks): every node's
// Talos goes to the file's in one step (no minor skipped, machinery's
// upgrade paths), and a combined Talos and Kubernetes upgrade has a safe
// order, which the plan records (p.Steps). The Kubernetes skip itself is
// checked with the Kubernetes change (kubernetes). A rollout upgrades Talos
// before Kubernetes, so where only the reverse order is safe (the cluster
// runs the oldest Kubernetes its Talos supports, which the new Talos no
// longer runs) the plan is refused with the two applies to run instead.
func (o Options) versions(p *Plan, facts []*Facts) {
	spec := o.Source.Cluster.Spec
	next := compat.Versions{Talos: spec.TalosVersion, Kubernetes: spec.KubernetesVersion}
	// The Talos versions the nodes run, with the nodes running each.
	byVersion := map[string][]string{}
	var running []string
	for i, f := range facts {
		if f == nil {
			continue
		}
		if byVersion[f.TalosVersion] == nil {
			running = append(running, f.TalosVersion)
		}
		byVersion[f.TalosVersion] = append(byVersion[f.TalosVersion], p.Nodes[i].Name)
	}
	if len(running) == 0 {
		return
	}
	slices.SortFunc(running, compareVersions)
	talosOK := true
	for _, v := range running {
		if sameVersion(v, next.Talos) {
			continue
		}
		if err := compat.CheckTalosStep(v, next.Talos); err != nil {
			talosOK = false
			p.Refusals = append(p.Refusals, o.located(fieldTalos, fmt.Errorf("%w (nodes running %s: %s)", err, v, strings.Join(byVersion[v], ", "))))
		}
	}
	kube := runningKubernetes(p, facts)
	if !talosOK || kube == "" || compat.CheckKubernetesUpgrade(kube, next.Kubernetes) != nil {
		return
	}
	// The oldest Talos a node runs decides the order (the others are
	// further along the same path).
	cur := compat.Versions{Talos: running[0], Kubernetes: kube}
	steps, err := compat.UpgradePath(cur, next)
	if err != nil {
		p.Refusals = append(p.Refusals, o.located(fieldTalos, err))
		return
	}
	if len(steps) == 2 && steps[0].Component == "kubernetes" {
		p.Refusals = append(p.Refusals, o.located(fieldTalos, fmt.Errorf(
			"Talos %s does not run Kubernetes %s, which the cluster runs: Kubernetes has to go first, and one apply upgrades Talos first; "+
				"set %s back to %s and apply %s %s, then set %s to %s and apply again",
			next.Talos, kube, fieldTalos, cur.Talos, fieldKubernetes, next.Kubernetes, fieldTalos, next.Talos)))
		return
	}
	p.Steps = steps
}

// runningKubernetes is the Kubernetes release the cluster runs: the oldest
// control-plane version (the apiserver image), or without a control plane
// in the plan (--node) the oldest kubelet.
func runningKubernetes(p *Plan, facts []*Facts) string {
	var cp, kubelet string
	for i, f := range facts {
		if f == nil || f.Config == nil || f.Config.RawV1Alpha1() == nil {
			continue
		}
		im := imagesOf(f.Config.RawV1Alpha1())
		if v := ImageTag(im.apiServer); v != "" && p.Nodes[i].Role == cluster.RoleControlPlane && (cp == "" || lessVersion(v, cp)) {
			cp = v
		}
		if v := ImageTag(im.kubelet); v != "" && (kubelet == "" || lessVersion(v, kubelet)) {
			kubelet = v
		}
	}
	if cp != "" {
		return cp
	}
	return kubelet
}

// compareVersions orders versions like v1.11.5 < v1.12.0 (unparsable ones
// as strings, after the others).
func compareVersions(a, b string) int {
	va, errA := semver.ParseTolerant(a)
	vb, errB := semver.ParseTolerant(b)
	switch {
	case errA == nil && errB == nil:
		return va.Compare(vb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

func sameVersion(a, b string) bool { return compareVersions(a, b) == 0 }
