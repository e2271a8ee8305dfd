package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/talos/compat"
	"github.com/dodai-dev/dodai/internal/testutil"
)

func exampleSpec(t *testing.T) cluster.Spec {
	t.Helper()
	body, err := cluster.Template(true, cluster.TemplateParams{Name: "demo", Endpoint: "https://192.168.100.10:6443"})
	if err != nil {
		t.Fatal(err)
	}
	src, probs := cluster.Parse("cluster.yaml", body)
	if src == nil {
		t.Fatal(probs)
	}
	return src.Cluster.Spec
}

// The Image Factory's ID of the schematic with no customization.
const vanillaID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

func TestVanillaSchematicID(t *testing.T) {
	id, err := SchematicID(cluster.Image{})
	if err != nil {
		t.Fatal(err)
	}
	if id != vanillaID {
		t.Fatalf("got %s, want the Image Factory's %s", id, vanillaID)
	}
}

func TestSchematicInfo(t *testing.T) {
	spec := exampleSpec(t)
	info, err := Info(spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID == vanillaID || len(info.ID) != 64 {
		t.Fatalf("bad id %s", info.ID)
	}
	want := "customization:\n    extraKernelArgs:\n        - console=ttyS0,115200\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/drbd\n            - siderolabs/zfs\n            - siderolabs/intel-ucode\n            - siderolabs/amd-ucode\n"
	if info.Schematic != want {
		t.Fatalf("schematic:\n%s", info.Schematic)
	}
	if info.Installer != "factory.talos.dev/metal-installer/"+info.ID+":"+compat.DefaultTalosVersion {
		t.Fatalf("installer %s", info.Installer)
	}
	if info.Kernel != "https://factory.talos.dev/image/"+info.ID+"/"+compat.DefaultTalosVersion+"/kernel-amd64" {
		t.Fatalf("kernel %s", info.Kernel)
	}
	spec.Image.SecureBoot = true
	info, _ = Info(spec)
	if !strings.Contains(info.Installer, "metal-installer-secureboot/") || !strings.HasSuffix(info.ISO, "metal-amd64-secureboot.iso") {
		t.Fatalf("secure boot urls: %+v", info)
	}
}

// TestGoldenProfiles: the example's extensions get the images published
// with its Talos release; a pin in spec.image.extensionImages wins.
func TestGoldenProfiles(t *testing.T) {
	spec := exampleSpec(t)
	spec.Image.ExtensionImages = map[string]string{"siderolabs/drbd": "registry.example.lan/siderolabs/drbd:9.3.3-v1.13.9"}
	for _, kind := range OutputKinds {
		p, warnings, err := NewProfileWarn(spec, kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(warnings) != 0 {
			t.Fatalf("%s: warnings %v", kind, warnings)
		}
		got, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, filepath.Join("testdata", "profile-"+kind+".yaml"), got)
	}
	if _, err := NewProfile(spec, "floppy"); err == nil {
		t.Fatal("unknown output kind accepted")
	}
}

// TestProfileExtensionImages: each release gets its own extension images
// (kernel modules are built per release); the warning is left for releases
// dodai does not know and for extensions that are not official.
func TestProfileExtensionImages(t *testing.T) {
	refs := func(p *Profile) []string {
		var out []string
		for _, e := range p.Input.SystemExtensions {
			out = append(out, e.ImageRef)
		}
		return out
	}
	for _, tc := range []struct {
		talos   string
		exts    []string
		want    []string
		warning string
	}{
		{"v1.11.5", []string{"siderolabs/drbd", "siderolabs/intel-ucode"},
			[]string{"ghcr.io/siderolabs/drbd:9.2.14-v1.11.5", "ghcr.io/siderolabs/intel-ucode:20250812"}, ""},
		{"v1.13.9", []string{"siderolabs/zfs", "siderolabs/drbd"},
			[]string{"ghcr.io/siderolabs/zfs:2.4.3-v1.13.9", "ghcr.io/siderolabs/drbd:9.3.3-v1.13.9"}, ""},
		{"v1.13.99", []string{"siderolabs/drbd"},
			[]string{"ghcr.io/siderolabs/drbd:v1.13.99"}, "dodai does not know the extension images of Talos v1.13.99"},
		{"v1.13.9", []string{"siderolabs/drbd", "example/gpu"},
			[]string{"ghcr.io/siderolabs/drbd:9.3.3-v1.13.9", "ghcr.io/example/gpu:v1.13.9"}, "example/gpu: they are not official extensions of Talos v1.13.9"},
	} {
		spec := exampleSpec(t)
		spec.TalosVersion, spec.Image.Extensions = tc.talos, tc.exts
		p, warnings, err := NewProfileWarn(spec, "installer")
		if err != nil {
			t.Fatal(err)
		}
		if got := refs(p); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s %v: images %v, want %v", tc.talos, tc.exts, got, tc.want)
		}
		switch {
		case tc.warning == "" && len(warnings) > 0:
			t.Errorf("%s %v: unexpected warnings %v", tc.talos, tc.exts, warnings)
		case tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warning)):
			t.Errorf("%s %v: warnings %v, want %q", tc.talos, tc.exts, warnings, tc.warning)
		}
	}
}

func TestFindEngine(t *testing.T) {
	none := func(string) (string, error) { return "", errors.New("not found") }
	if _, err := FindEngine("", none); !errors.Is(err, ErrNoEngine) {
		t.Fatalf("got %v", err)
	}
	onlyPodman := func(n string) (string, error) {
		if n == "podman" {
			return "/usr/bin/podman", nil
		}
		return "", errors.New("not found")
	}
	if p, err := FindEngine("", onlyPodman); err != nil || p != "/usr/bin/podman" {
		t.Fatalf("got %s %v", p, err)
	}
	if _, err := FindEngine("docker", onlyPodman); err == nil || !strings.Contains(err.Error(), `"docker" not found`) {
		t.Fatalf("got %v", err)
	}
	if _, err := FindEngine("lxc", onlyPodman); err == nil {
		t.Fatal("lxc accepted")
	}
}

// TestBuildRunsEngine runs Build with a stand-in engine script that records
// its arguments and stdin, proving the imager invocation and the profile fed
// to it.
func TestBuildRunsEngine(t *testing.T) {
	bin := t.TempDir()
	rec := filepath.Join(t.TempDir(), "rec")
	script := "#!/bin/sh\necho \"$@\" > " + rec + ".args\n/bin/cat > " + rec + ".stdin\n"
	if err := os.WriteFile(filepath.Join(bin, "podman"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	out := filepath.Join(t.TempDir(), "out")
	if err := Build(context.Background(), "", out, exampleSpec(t), "iso", &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(rec + ".args")
	stdin, _ := os.ReadFile(rec + ".stdin")
	if !strings.Contains(string(args), "run --rm -i -v "+out+":/out ghcr.io/siderolabs/imager:"+compat.DefaultTalosVersion+" -") {
		t.Fatalf("args (1.13's imager runs rootless): %s", args)
	}
	old := BuildCommand(context.Background(), "podman", out, "v1.12.7", nil, nil, nil)
	if got := strings.Join(old.Args[1:], " "); got != "run --rm -i --privileged -v /dev:/dev -v "+out+":/out ghcr.io/siderolabs/imager:v1.12.7 -" {
		t.Fatalf("args for a 1.12 imager: %s", got)
	}
	if !strings.Contains(string(stdin), "kind: iso") {
		t.Fatalf("stdin: %s", stdin)
	}
	t.Setenv("PATH", t.TempDir())
	err := Build(context.Background(), "", out, exampleSpec(t), "iso", &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, ErrNoEngine) {
		t.Fatalf("without an engine: %v", err)
	}
}

// TestBaseInstaller: from Talos 1.10 the imager builds on installer-base
// (its own default since the unified installer), before on the installer.
func TestBaseInstaller(t *testing.T) {
	for v, want := range map[string]string{
		"v1.9.6":  "ghcr.io/siderolabs/installer:v1.9.6",
		"v1.10.0": "ghcr.io/siderolabs/installer-base:v1.10.0",
		"v1.13.9": "ghcr.io/siderolabs/installer-base:v1.13.9",
	} {
		if got := BaseInstaller(v); got != want {
			t.Errorf("BaseInstaller(%s) = %s, want %s", v, got, want)
		}
	}
}
