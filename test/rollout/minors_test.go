package rollout_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
	"github.com/dodai-dev/dodai/test/talosvalidate"
)

// networkDocuments reports whether a config has the node's network in
// Talos 1.12's documents (HostnameConfig, LinkConfig) rather than in
// machine.network of the v1alpha1 document (up to 1.11).
func networkDocuments(cfg config.Provider) (documents, legacy bool) {
	documents = cfg.NetworkHostnameConfig() != nil && len(cfg.NetworkCommonLinkConfigs()) > 0
	if raw := cfg.RawV1Alpha1(); raw != nil && raw.MachineConfig != nil && raw.MachineConfig.MachineNetwork != nil {
		n := raw.MachineConfig.MachineNetwork
		legacy = n.NetworkHostname != "" || len(n.NetworkInterfaces) > 0
	}
	return documents, legacy
}

// TestUpgradeAcrossMinors: a cluster bootstrapped from the CLI on Talos
// 1.11 fake nodes is taken to 1.12 and then to 1.13, Kubernetes one minor
// along each time, through `dodai plan` and `dodai apply`, then gets a new
// image on 1.13. A skip of a Talos minor is refused before anything
// changes. Each release gets its config in its own form (1.12 moves the
// network into documents), which the fake nodes check with that release's
// machinery, and the upgrade API of the release the node runs:
// MachineService.Upgrade on 1.11 and 1.12, ImageService.Pull +
// LifecycleService.Upgrade + Reboot on 1.13.
func TestUpgradeAcrossMinors(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 1, RebootDelay: 50 * time.Millisecond,
		Spec: spec{Talos: "v1.11.5", Kubernetes: "v1.34.1", Extensions: []string{"siderolabs/drbd"}}})
	tc.bootstrap(ctx)
	cps := tc.Names[:3]
	for _, n := range tc.Names {
		if docs, legacy := networkDocuments(tc.Nodes[n].Config()); docs || !legacy {
			t.Fatalf("%s bootstrapped on 1.11 with network documents %v, machine.network %v", n, docs, legacy)
		}
	}

	// 1.11 → 1.13 skips a minor: refused by plan and apply, naming the
	// field and the next step; no node is touched.
	s := tc.spec
	s.Talos = "v1.13.9"
	tc.write(s)
	since := time.Now()
	code, out, errOut := tc.dodai(ctx, "plan")
	if code != 1 || !strings.Contains(out, "cluster.yaml:6:17: spec.talosVersion: Talos v1.11.5 → v1.13.9 skips v1.12") ||
		!strings.Contains(out, "upgrade to the newest v1.12.x first (nodes running v1.11.5: cp1, cp2, cp3, w1)") {
		t.Fatalf("plan skipping Talos 1.12: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("plan of 1.11 → 1.13:\n%s", out)
	if code, out, errOut = tc.apply(ctx); code != 1 || !strings.Contains(errOut, "skips v1.12") {
		t.Fatalf("apply skipping Talos 1.12: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, m := range []string{"Upgrade", "ApplyConfiguration", "Boot"} {
		if n := tc.count(m, since); len(n) != 0 {
			t.Fatalf("a refused plan called %s: %v", m, n)
		}
	}

	// 1.11 → 1.12 with Kubernetes 1.34 → 1.35: Talos first (1.12 runs
	// 1.34), then Kubernetes.
	snaps0 := tc.snapshots()
	s.Talos, s.Kubernetes = "v1.12.7", "v1.35.4"
	tc.write(s)
	code, p := tc.planJSON(ctx)
	var steps []string
	for _, st := range p.Steps {
		steps = append(steps, st.String())
	}
	if code != 2 || !slices.Equal(steps, []string{"talos v1.11.5 → v1.12.7", "kubernetes v1.34.1 → v1.35.4"}) {
		t.Fatalf("plan to 1.12: exit %d, steps %q, refusals %q", code, steps, p.AllRefusals())
	}
	for _, n := range p.Nodes {
		if n.Upgrade == nil || n.Upgrade.API != plan.APILegacy {
			t.Fatalf("plan to 1.12 of %s: %+v, want an upgrade through %s", n.Name, n.Upgrade, plan.APILegacy)
		}
		// The plan says the config changes form after the upgrade.
		if f := n.Upgrade.NewForm; f == nil || !slices.Contains(f.AddDocuments, "HostnameConfig") || !slices.Contains(f.AddDocuments, "LinkConfig") {
			t.Fatalf("plan to 1.12 of %s: new form %+v, want the network documents", n.Name, f)
		}
	}
	_, out, _ = tc.dodai(ctx, "plan")
	if !strings.Contains(out, "Upgrade order") || !strings.Contains(out, "talos v1.11.5 → v1.12.7, then kubernetes v1.34.1 → v1.35.4") ||
		!strings.Contains(out, "; then the config in v1.12.7's form (documents +") {
		t.Fatalf("plan to 1.12 shows no order:\n%s", out)
	}
	t.Logf("plan of 1.11 → 1.12:\n%s", out)
	since = time.Now()
	if code, out, errOut = tc.apply(ctx); code != 0 {
		t.Fatalf("apply to 1.12: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply of 1.11 → 1.12:\n%s\n%s", out, errOut)
	tc.checkTalosRelease(ctx, "v1.12.7", "v1.35.4", s.Extensions, since, false)
	if n := len(tc.snapshots()) - len(snaps0); n < len(cps) {
		t.Fatalf("%d etcd snapshots for %d control-plane upgrades", n, len(cps))
	}

	// 1.12 → 1.13 with Kubernetes 1.35 → 1.36: the nodes run 1.12, which
	// has no LifecycleService, so MachineService.Upgrade once more.
	s.Talos, s.Kubernetes = "v1.13.9", "v1.36.3"
	tc.write(s)
	_, out, _ = tc.dodai(ctx, "plan")
	if !strings.Contains(out, "Upgrade order") || !strings.Contains(out, "talos v1.12.7 → v1.13.9, then kubernetes v1.35.4 → v1.36.3") {
		t.Fatalf("plan to 1.13:\n%s", out)
	}
	t.Logf("plan of 1.12 → 1.13:\n%s", out)
	since = time.Now()
	if code, out, errOut = tc.apply(ctx); code != 0 {
		t.Fatalf("apply to 1.13: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply of 1.12 → 1.13:\n%s\n%s", out, errOut)
	tc.checkTalosRelease(ctx, "v1.13.9", "v1.36.3", s.Extensions, since, false)

	// On 1.13 an image change (an extension added) goes through
	// ImageService.Pull, LifecycleService.Upgrade and Reboot. That API
	// checks nothing about etcd: dodai's own checks and snapshots run
	// before each control plane goes down, one at a time.
	snaps1 := tc.snapshots()
	s.Extensions = []string{"siderolabs/drbd", "siderolabs/zfs"}
	tc.write(s)
	code, out, errOut = tc.dodai(ctx, "plan")
	if code != 2 || strings.Count(out, "upgrade v1.13.9 (new image) [+siderolabs/zfs]") != len(tc.Names) ||
		!strings.Contains(out, "through LifecycleService") {
		t.Fatalf("plan of a new image on 1.13: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("plan of a new image on 1.13:\n%s", out)
	// The worker's installer fails first: apply stops there with its exit
	// code and last lines, the node is not rebooted; the next apply
	// finishes it.
	tc.Nodes["w1"].SetFaults(faketalos.Faults{InstallerExitCode: 3})
	since = time.Now()
	code, out, errOut = tc.apply(ctx)
	if code != 1 || !strings.Contains(errOut, "node w1, step upgrade: the installer of factory.talos.dev/metal-installer/") ||
		!strings.Contains(errOut, ":v1.13.9 exited with code 3: ") || !strings.Contains(errOut, "no space left on device") {
		t.Fatalf("apply with a failing installer: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply with a failing installer on w1:\n%s", errOut)
	if n := tc.count("Reboot", since)["w1"]; n != 0 {
		t.Fatalf("w1 rebooted %d times after its installer failed", n)
	}
	tc.Nodes["w1"].SetFaults(faketalos.Faults{})
	if code, out, errOut = tc.apply(ctx); code != 0 {
		t.Fatalf("apply of a new image on 1.13: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply of a new image on 1.13 (resumed):\n%s\n%s", out, errOut)
	tc.checkTalosRelease(ctx, "v1.13.9", "v1.36.3", s.Extensions, since, true)
	if n := len(tc.snapshots()) - len(snaps1); n < len(cps) {
		t.Fatalf("%d etcd snapshots for %d control-plane upgrades", n, len(cps))
	}
	spans := tc.downtimes("Reboot", since)
	if len(spans) != len(tc.Names) {
		t.Fatalf("reboots into the new image: %+v", spans)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Fatalf("%s went down before %s was back", spans[i].node, spans[i-1].node)
		}
	}

	// Converged.
	if code, out, _ := tc.dodai(ctx, "plan"); code != 0 {
		t.Fatalf("plan after the upgrades: exit %d\n%s", code, out)
	}
}

// snapshots lists the etcd snapshots in the cluster directory.
func (tc *testCluster) snapshots() []string {
	tc.t.Helper()
	snaps, err := etcd.Snapshots(cluster.At(tc.Dir).EtcdSnapshots())
	if err != nil {
		tc.t.Fatal(err)
	}
	return snaps
}

// checkTalosRelease checks that every node runs Talos talos with the file's
// image and extensions, its config in that release's form (accepted by that
// release's machinery), kubelet kube, and that the upgrade since then went
// through the API of the release the node ran: LifecycleService when
// lifecycle, else MachineService.Upgrade.
func (tc *testCluster) checkTalosRelease(ctx context.Context, talos, kube string, extensions []string, since time.Time, lifecycle bool) {
	tc.t.Helper()
	t := tc.t
	for _, name := range tc.Names {
		n := tc.Nodes[name]
		if v := n.TalosVersion(); v != talos {
			t.Fatalf("%s runs Talos %s, want %s", name, v, talos)
		}
		ups := n.Upgrades()
		if len(ups) == 0 || !strings.HasPrefix(ups[len(ups)-1], "factory.talos.dev/metal-installer/") || !strings.HasSuffix(ups[len(ups)-1], ":"+talos) {
			t.Fatalf("%s upgraded with %v, want the factory installer of %s", name, ups, talos)
		}
		if _, exts := n.Image(); !slices.Equal(exts, extensions) {
			t.Fatalf("%s runs extensions %v after the upgrade", name, exts)
		}
		legacy, lc := tc.count("Upgrade", since)[name], tc.count("LifecycleService.Upgrade", since)[name]
		pulls, reboots := tc.count("ImageService.Pull", since)[name], tc.count("Reboot", since)[name]
		if lifecycle && (legacy != 0 || lc < 1 || pulls != lc || reboots != 1) {
			t.Fatalf("%s: upgrade to %s through MachineService.Upgrade %d, ImageService.Pull %d, LifecycleService.Upgrade %d, Reboot %d; want LifecycleService only", name, talos, legacy, pulls, lc, reboots)
		}
		if !lifecycle && (legacy != 1 || lc != 0) {
			t.Fatalf("%s: upgrade to %s through MachineService.Upgrade %d, LifecycleService.Upgrade %d; want MachineService.Upgrade", name, talos, legacy, lc)
		}
		docs, old := networkDocuments(n.Config())
		if !docs || old {
			t.Fatalf("%s on %s: network documents %v, machine.network %v; want the documents only", name, talos, docs, old)
		}
		// The node's own check ran on every apply; check the running
		// config with that release's machinery once more, explicitly.
		b, err := n.Config().EncodeBytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := talosvalidate.Validate(ctx, talos, b); err != nil {
			t.Fatalf("%s's config is refused by the machinery of %s: %v", name, talos, err)
		}
		node, err := tc.kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || node.Status.NodeInfo.KubeletVersion != kube {
			t.Fatalf("Node %s: kubelet %q %v, want %s", name, node.Status.NodeInfo.KubeletVersion, err, kube)
		}
	}
}
