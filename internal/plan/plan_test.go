package plan

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/image"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

// A real kube-apiserver's metrics text (v1.34), with one API still served
// but removed in 1.35 and one removed later.
const metricsText = `# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
# TYPE apiserver_requested_deprecated_apis gauge
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.35",resource="flowschemas",subresource="",version="v1beta3"} 1
apiserver_requested_deprecated_apis{group="resource.k8s.io",removed_release="1.37",resource="resourceclaims",subresource="status",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="",removed_release="1.35",resource="zeroes",subresource="",version="v1"} 0
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="namespaces",scope="cluster",subresource="",verb="LIST",version="v1"} 3
`

func TestParseRemovedAPIs(t *testing.T) {
	got, err := ParseRemovedAPIs([]byte(metricsText), "v1.35.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].String() != "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.35)" {
		t.Fatalf("removed in 1.35: %+v", got)
	}
	got, _ = ParseRemovedAPIs([]byte(metricsText), "v1.37.2")
	if len(got) != 2 || got[1].String() != "resource.k8s.io/v1beta1 resourceclaims/status (removed in 1.37)" {
		t.Fatalf("removed by 1.37: %+v", got)
	}
	if got, _ := ParseRemovedAPIs([]byte(metricsText), "v1.34.9"); len(got) != 0 {
		t.Fatalf("removed by 1.34: %+v", got)
	}
	if got, err := ParseRemovedAPIs([]byte("apiserver_request_total 1\n"), "v1.35.0"); err != nil || got != nil {
		t.Fatalf("no metric: %v %v", got, err)
	}
	if _, err := ParseRemovedAPIs([]byte("not { metrics"), "v1.35.0"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzParseRemovedAPIs(f *testing.F) {
	f.Add([]byte(metricsText), "v1.35.0")
	f.Add([]byte("apiserver_requested_deprecated_apis{removed_release=\"x\"} 1\n"), "v1.2.3")
	f.Fuzz(func(t *testing.T, metrics []byte, to string) {
		got, err := ParseRemovedAPIs(metrics, to)
		if err != nil {
			return
		}
		ta, tb, _ := minor(to)
		for _, a := range got {
			ra, rb, err := minor(a.RemovedRelease)
			if err != nil || ra > ta || (ra == ta && rb > tb) {
				t.Fatalf("%+v listed as removed by %s", a, to)
			}
		}
	})
}

func TestTargetAndUpgrade(t *testing.T) {
	spec := cluster.Spec{TalosVersion: "v1.11.6", Image: cluster.Image{Factory: cluster.DefaultFactory, Arch: "amd64",
		Extensions: []string{"siderolabs/zfs", "siderolabs/drbd"}}}
	id, _ := image.SchematicID(spec.Image)
	tg, err := TargetImage(spec)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Installer != "factory.talos.dev/metal-installer/"+id+":v1.11.6" || tg.Schematic != id || !tg.Known ||
		!slices.Equal(tg.ImageExtensions, []string{"siderolabs/drbd", "siderolabs/zfs"}) {
		t.Fatalf("target: %+v", tg)
	}
	same := &Facts{TalosVersion: "v1.11.6", Schematic: id, Extensions: []string{"siderolabs/drbd", "siderolabs/zfs"}}
	if u, r, _ := tg.UpgradeFor(same); u != nil || r != nil {
		t.Fatalf("converged node: %+v %v", u, r)
	}
	old := &Facts{TalosVersion: "v1.11.5", Schematic: "abc", Extensions: []string{"siderolabs/drbd", "siderolabs/iscsi-tools"}}
	u, r, _ := tg.UpgradeFor(old)
	if u == nil || r != nil || u.FromVersion != "v1.11.5" || !slices.Equal(u.AddExtensions, []string{"siderolabs/zfs"}) ||
		!slices.Equal(u.RemoveExtensions, []string{"siderolabs/iscsi-tools"}) || u.ToSchematic != id {
		t.Fatalf("upgrade: %+v %v", u, r)
	}
	if u.API != APILegacy {
		t.Fatalf("a 1.11 node upgrades through %s, want %s", u.API, APILegacy)
	}
	// A node running 1.13 upgrades through the API of its release.
	if u, _, _ := tg.UpgradeFor(&Facts{TalosVersion: "v1.13.9", Schematic: id}); u == nil || u.API != APILifecycle {
		t.Fatalf("a 1.13 node's upgrade: %+v", u)
	}

	// The vanilla installer drops drbd, which the node runs and the file lists.
	spec.Image.Installer = "ghcr.io/siderolabs/installer:v1.11.6"
	tg, _ = TargetImage(spec)
	u, r, _ = tg.UpgradeFor(same)
	if u == nil || len(r) != 2 || !strings.Contains(r[0], "the upgrade would drop extension siderolabs/drbd, which the node runs and spec.image.extensions still lists: installer ghcr.io/siderolabs/installer:v1.11.6 does not carry it") {
		t.Fatalf("dropped extensions: %+v %q", u, r)
	}
	// An extension the file no longer lists may go.
	spec.Image.Extensions = nil
	tg, _ = TargetImage(spec)
	if u, r, _ := tg.UpgradeFor(same); u == nil || r != nil || len(u.RemoveExtensions) != 2 {
		t.Fatalf("removing extensions: %+v %v", u, r)
	}

	// A custom installer: content unknown, a warning, no refusal.
	spec.Image.Extensions = []string{"siderolabs/drbd"}
	spec.Image.Installer = "registry.example.com/talos/installer:v1.11.6"
	tg, _ = TargetImage(spec)
	u, r, w := tg.UpgradeFor(&Facts{TalosVersion: "v1.11.5", Extensions: []string{"siderolabs/drbd"}})
	if tg.Known || u == nil || r != nil || len(w) != 1 || u.Extensions != nil {
		t.Fatalf("custom installer: %+v %v %v", u, r, w)
	}
	// The factory installer of the file's schematic, named explicitly.
	spec.Image.Installer = "factory.talos.dev/installer/" + mustID(t, spec.Image) + ":v1.11.6"
	if tg, _ = TargetImage(spec); !tg.Known || tg.Schematic == "" {
		t.Fatalf("explicit factory installer: %+v", tg)
	}
}

func mustID(t *testing.T, im cluster.Image) string {
	id, err := image.SchematicID(im)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// loadCluster writes a cluster directory with secrets and returns its renderer.
func loadCluster(t *testing.T, spec string) (*cluster.Source, *machineconfig.Renderer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, cluster.FileName), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(dir, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	d, err := clusterdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	src := d.Source
	r, err := machineconfig.New(src)
	if err != nil {
		t.Fatal(err)
	}
	return src, r
}

const testFile = `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  talosVersion: v1.11.5
  kubernetesVersion: %s
  endpoint: https://10.0.0.1:6443
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:01"], address: 10.0.0.1/24, installDisk: {selector: {type: nvme}}}
    - {name: w1, role: worker, macs: ["52:54:00:00:00:02"], address: 10.0.0.2/24, installDisk: {path: /dev/sda}}
`

func TestDesiredStages(t *testing.T) {
	src, r := loadCluster(t, strings.Replace(testFile, "%s", "v1.34.1", 1))
	// What the node runs: rendered for Kubernetes 1.33.5 with the disk
	// bootstrap resolved.
	oldSrc, _ := loadCluster(t, strings.Replace(testFile, "%s", "v1.33.5", 1))
	if err := copySecrets(src.Dir, oldSrc.Dir); err != nil {
		t.Fatal(err)
	}
	oldR, err := machineconfig.New(oldSrc)
	if err != nil {
		t.Fatal(err)
	}
	running, err := oldR.NodeConfigFor("cp1", machineconfig.NodeOptions{InstallDisk: "/dev/nvme0n1"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := configloader.NewFromBytes(running)
	if err != nil {
		t.Fatal(err)
	}
	f := &Facts{TalosVersion: "v1.11.5", Config: rc}
	node := &src.Cluster.Spec.Nodes[0]

	// The same file renders the running config back, byte for byte.
	back, err := Desired(oldR, &oldSrc.Cluster.Spec.Nodes[0], f, StageKubelet)
	if err != nil {
		t.Fatal(err)
	}
	if eq, err := Equal(back, rc); err != nil || !eq {
		d, _, _ := RedactedDiff(rc, back)
		t.Fatalf("re-rendering the running config differs: %v\n%s", err, d)
	}

	images := func(stage Stage) k8sImages {
		c, err := Desired(r, node, f, stage)
		if err != nil {
			t.Fatal(err)
		}
		if c.Machine().Install().Disk() != "/dev/nvme0n1" {
			t.Fatalf("stage %d: install disk %q", stage, c.Machine().Install().Disk())
		}
		return imagesOf(c.RawV1Alpha1())
	}
	n, cp, k := images(StageNode), images(StageControlPlane), images(StageKubelet)
	if ImageTag(n.kubelet) != "v1.33.5" || ImageTag(n.apiServer) != "v1.33.5" || ImageTag(n.scheduler) != "v1.33.5" {
		t.Fatalf("node stage changes Kubernetes: %+v", n)
	}
	if ImageTag(cp.kubelet) != "v1.33.5" || ImageTag(cp.apiServer) != "v1.34.1" || ImageTag(cp.controllerManager) != "v1.34.1" || ImageTag(cp.proxy) != "v1.34.1" {
		t.Fatalf("control-plane stage: %+v", cp)
	}
	if ImageTag(k.kubelet) != "v1.34.1" || ImageTag(k.apiServer) != "v1.34.1" {
		t.Fatalf("kubelet stage: %+v", k)
	}
	// Stage node of the new file equals the running config: a Kubernetes
	// version change alone is no node-stage change.
	want, _ := Desired(r, node, f, StageNode)
	if eq, _ := Equal(want, rc); !eq {
		d, _, _ := RedactedDiff(rc, want)
		t.Fatalf("node stage differs from the running config:\n%s", d)
	}
}

func copySecrets(from, to string) error {
	b, err := os.ReadFile(filepath.Join(from, cluster.SecretsFile))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(to, cluster.SecretsFile), b, 0o600)
}

func TestRedactedDiff(t *testing.T) {
	src, r := loadCluster(t, strings.Replace(testFile, "%s", "v1.34.1", 1))
	a, _ := r.NodeConfigFor("w1", machineconfig.NodeOptions{})
	ac, _ := configloader.NewFromBytes(a)
	// Another secrets bundle: every secret differs, nothing else.
	other := t.TempDir()
	if _, err := machineconfig.InitSecrets(other, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(other, cluster.SecretsFile))
	if err := os.WriteFile(filepath.Join(src.Dir, cluster.SecretsFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r2, _ := machineconfig.New(src)
	bb, _ := r2.NodeConfigFor("w1", machineconfig.NodeOptions{})
	bc, _ := configloader.NewFromBytes(bb)
	diff, secrets, err := RedactedDiff(ac, bc)
	if err != nil {
		t.Fatal(err)
	}
	// Certificates and IDs are not secret; keys and tokens are.
	for _, sec := range []string{bc.Machine().Security().Token(), bc.Cluster().Secret(), ac.Machine().Security().Token(), ac.Cluster().Secret()} {
		if strings.Contains(diff, sec) {
			t.Fatalf("diff shows a secret %q:\n%s", sec, diff)
		}
	}
	if secrets || !strings.Contains(diff, "-    id: "+ac.Cluster().ID()) || !strings.Contains(diff, "secret: REDACTED") {
		t.Fatalf("secrets changed %v; diff:\n%s", secrets, diff)
	}
	// Only a secret differs: no diff to show, but said.
	tok := ac.Clone()
	tok.RawV1Alpha1().MachineConfig.MachineToken = "another.token"
	if d, s, err := RedactedDiff(ac, tok); d != "" || !s || err != nil {
		t.Fatalf("token change: %q %v %v", d, s, err)
	}
	// Same config: no diff, nothing hidden.
	if d, s, err := RedactedDiff(ac, ac); d != "" || s || err != nil {
		t.Fatalf("same config: %q %v %v", d, s, err)
	}
}

func TestSubsetAndValuesDiff(t *testing.T) {
	live := map[string]any{"interval": "5m0s", "chart": map[string]any{"spec": map[string]any{"chart": "c", "version": "1.0.0", "reconcileStrategy": "ChartVersion"}}, "maxHistory": int64(5)}
	if !subset(map[string]any{"interval": "5m0s", "maxHistory": float64(5)}, live) {
		t.Fatal("defaults or number types made a difference")
	}
	if subset(map[string]any{"interval": "10m0s"}, live) {
		t.Fatal("a changed field is a subset")
	}
	if !subset(withVersion(map[string]any{"spec": map[string]any{"chart": "c", "version": "1.1.0"}}, "1.0.0"), live["chart"]) {
		t.Fatal("withVersion")
	}
	d, err := valuesDiff(map[string]any{"a": 1, "b": "x"}, map[string]any{"a": 2, "b": "x"})
	if err != nil || !strings.Contains(d, "-a: 1\n") || !strings.Contains(d, "+a: 2\n") {
		t.Fatalf("values diff %q %v", d, err)
	}
	if d, _ := valuesDiff(nil, map[string]any{}); d != "" {
		t.Fatalf("nil vs empty: %q", d)
	}
}

// TestNewForm: an upgrade to 1.12 changes the form of a 1.11 node's config
// (network documents), a patch upgrade does not.
func TestNewForm(t *testing.T) {
	src, r := loadCluster(t, strings.Replace(testFile, "%s", "v1.34.1", 1))
	node := &src.Cluster.Spec.Nodes[0]
	running, err := r.NodeConfigFor("cp1", machineconfig.NodeOptions{TalosVersion: "v1.11.5", InstallDisk: "/dev/nvme0n1"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := configloader.NewFromBytes(running)
	if err != nil {
		t.Fatal(err)
	}
	f := &Facts{TalosVersion: "v1.11.5", Config: rc}
	now, err := Desired(r, node, f, StageKubelet)
	if err != nil {
		t.Fatal(err)
	}
	if fc, err := NewForm(r, node, f, now, "v1.11.6"); err != nil || fc != nil {
		t.Fatalf("1.11.5 → 1.11.6: %+v %v", fc, err)
	}
	fc, err := NewForm(r, node, f, now, "v1.12.7")
	if err != nil || fc == nil {
		t.Fatalf("1.11.5 → 1.12.7: %+v %v", fc, err)
	}
	for _, k := range []string{"HostnameConfig", "LinkAliasConfig", "LinkConfig"} {
		if !slices.Contains(fc.AddDocuments, k) {
			t.Errorf("1.12 form adds %v, want %s among them", fc.AddDocuments, k)
		}
	}
	if len(fc.RemoveDocuments) != 0 || !strings.HasPrefix(fc.String(), "documents +") {
		t.Errorf("form change %+v %q", fc, fc)
	}
}
