// Package image turns the cluster file's image section into the two forms
// Talos understands: the Image Factory schematic (with its ID and download
// URLs) and the imager profile that ghcr.io/siderolabs/imager reads on stdin.
// It can also run the imager container.
package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/image/extensions"
	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Schematic returns the Image Factory schematic for the cluster's image,
// using the Image Factory's own data model so the ID is the factory's.
func Schematic(im cluster.Image) *schematic.Schematic {
	s := &schematic.Schematic{}
	s.Customization.ExtraKernelArgs = append([]string(nil), im.ExtraKernelArgs...)
	s.Customization.SystemExtensions.OfficialExtensions = append([]string(nil), im.Extensions...)
	return s
}

// SchematicInfo is what `dodai image schematic` prints.
type SchematicInfo struct {
	ID        string `json:"id" yaml:"id"`
	Schematic string `json:"schematic" yaml:"schematic"`
	Kernel    string `json:"kernel" yaml:"kernel"`
	Initramfs string `json:"initramfs" yaml:"initramfs"`
	ISO       string `json:"iso" yaml:"iso"`
	Installer string `json:"installer" yaml:"installer"`
	PXE       string `json:"pxe" yaml:"pxe"`
}

// Info computes the schematic, its ID and the factory URLs for a cluster.
func Info(spec cluster.Spec) (*SchematicInfo, error) {
	s := Schematic(spec.Image)
	body, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encoding schematic: %w", err)
	}
	id, err := s.ID()
	if err != nil {
		return nil, fmt.Errorf("computing schematic ID: %w", err)
	}
	f := strings.TrimSuffix(spec.Image.Factory, "/")
	arch, ver := spec.Image.Arch, spec.TalosVersion
	sb := ""
	if spec.Image.SecureBoot {
		sb = "-secureboot"
	}
	return &SchematicInfo{
		ID:        id,
		Schematic: string(body),
		Kernel:    fmt.Sprintf("%s/image/%s/%s/kernel-%s", f, id, ver, arch),
		Initramfs: fmt.Sprintf("%s/image/%s/%s/initramfs-%s.xz", f, id, ver, arch),
		ISO:       fmt.Sprintf("%s/image/%s/%s/metal-%s%s.iso", f, id, ver, arch, sb),
		Installer: InstallerImage(spec, id),
		PXE:       fmt.Sprintf("%s/pxe/%s/%s/metal-%s%s", pxeHost(f), id, ver, arch, sb),
	}, nil
}

// pxeHost maps the public factory to its PXE host; a private factory serves
// PXE scripts itself.
func pxeHost(factory string) string {
	if factory == cluster.DefaultFactory {
		return "https://pxe.factory.talos.dev"
	}
	return factory
}

// InstallerImage returns the installer image machine configs should use:
// spec.image.installer when set, else the factory installer for the schematic.
func InstallerImage(spec cluster.Spec, schematicID string) string {
	if spec.Image.Installer != "" {
		return spec.Image.Installer
	}
	host := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSuffix(spec.Image.Factory, "/"), "https://"), "http://")
	kind := "metal-installer"
	if spec.Image.SecureBoot {
		kind = "metal-installer-secureboot"
	}
	return fmt.Sprintf("%s/%s/%s:%s", host, kind, schematicID, spec.TalosVersion)
}

// SchematicID returns the Image Factory ID for the cluster's image.
func SchematicID(im cluster.Image) (string, error) {
	return Schematic(im).ID()
}

// Output kinds of the imager.
var OutputKinds = []string{"installer", "iso", "kernel", "initramfs", "metal"}

// Profile is the imager profile (ghcr.io/siderolabs/imager's stdin). Only
// the fields dodai sets are modelled: importing the upstream type
// (github.com/siderolabs/talos/pkg/imager/profile) pulls the whole Talos
// module with its cloud signers into dodai, so this small subset is written
// here and kept to the upstream field names (see docs/image.md).
type Profile struct {
	Arch          string         `yaml:"arch"`
	Platform      string         `yaml:"platform"`
	SecureBoot    bool           `yaml:"secureboot"`
	Version       string         `yaml:"version"`
	Customization *Customization `yaml:"customization,omitempty"`
	Input         Input          `yaml:"input"`
	Output        Output         `yaml:"output"`
}

// Customization of the image.
type Customization struct {
	ExtraKernelArgs []string `yaml:"extraKernelArgs,omitempty"`
}

// Input of the imager.
type Input struct {
	Kernel           FileAsset        `yaml:"kernel"`
	Initramfs        FileAsset        `yaml:"initramfs"`
	BaseInstaller    ContainerAsset   `yaml:"baseInstaller"`
	SystemExtensions []ContainerAsset `yaml:"systemExtensions,omitempty"`
}

// FileAsset is a file inside the imager container.
type FileAsset struct {
	Path string `yaml:"path"`
}

// ContainerAsset is a container image reference.
type ContainerAsset struct {
	ImageRef string `yaml:"imageRef"`
}

// Output of the imager.
type Output struct {
	Kind         string        `yaml:"kind"`
	ImageOptions *ImageOptions `yaml:"imageOptions,omitempty"`
	OutFormat    string        `yaml:"outFormat"`
}

// ImageOptions for disk images.
type ImageOptions struct {
	DiskSize   int64  `yaml:"diskSize"`
	DiskFormat string `yaml:"diskFormat,omitempty"`
}

// BaseInstaller is the installer image the imager builds on for a Talos
// release: installer-base from Talos 1.10 on (the unified installer; the
// imager's own default), the full installer before.
func BaseInstaller(talosVersion string) string {
	if quirks.New(talosVersion).SupportsUnifiedInstaller() {
		return "ghcr.io/siderolabs/installer-base:" + talosVersion
	}
	return "ghcr.io/siderolabs/installer:" + talosVersion
}

// NewProfile builds the imager profile for one output kind.
func NewProfile(spec cluster.Spec, kind string) (*Profile, error) {
	p, _, err := NewProfileWarn(spec, kind)
	return p, err
}

// NewProfileWarn is NewProfile that also returns warnings, e.g. for
// extensions without a pinned image (the imager cannot resolve versions).
func NewProfileWarn(spec cluster.Spec, kind string) (*Profile, []string, error) {
	var warnings, unpinned []string
	im := spec.Image
	p := &Profile{
		Arch:       im.Arch,
		Platform:   im.Platform,
		SecureBoot: im.SecureBoot,
		Version:    spec.TalosVersion,
		Input: Input{
			Kernel:        FileAsset{Path: fmt.Sprintf("/usr/install/%s/vmlinuz", im.Arch)},
			Initramfs:     FileAsset{Path: fmt.Sprintf("/usr/install/%s/initramfs.xz", im.Arch)},
			BaseInstaller: ContainerAsset{ImageRef: BaseInstaller(spec.TalosVersion)},
		},
	}
	if len(im.ExtraKernelArgs) > 0 {
		p.Customization = &Customization{ExtraKernelArgs: append([]string(nil), im.ExtraKernelArgs...)}
	}
	for _, e := range im.Extensions {
		ref, ok := im.ExtensionImages[e]
		if !ok {
			// The imager does not resolve extension versions
			// (siderolabs/talos#7912): take the image published with the
			// release from dodai's table; failing that, name it by the
			// Talos version tag, which the user must resolve.
			if ref, ok = extensions.Image(spec.TalosVersion, e); !ok {
				ref = "ghcr.io/" + e + ":" + spec.TalosVersion
				unpinned = append(unpinned, e)
			}
		}
		p.Input.SystemExtensions = append(p.Input.SystemExtensions, ContainerAsset{ImageRef: ref})
	}
	if len(unpinned) > 0 {
		why := fmt.Sprintf("dodai does not know the extension images of Talos %s (it knows %s)", spec.TalosVersion, knownReleases())
		if extensions.Known(spec.TalosVersion) {
			why = fmt.Sprintf("they are not official extensions of Talos %s", spec.TalosVersion)
		}
		warnings = append(warnings, fmt.Sprintf("extensions without a known image: %s: %s; "+
			"the profile names them by the Talos version tag, which the imager cannot resolve: pin them in "+
			"spec.image.extensionImages (real tags are in the image-digests list of the Talos release; "+
			"the Image Factory resolves official ones itself: `dodai image schematic`)",
			strings.Join(unpinned, ", "), why))
	}
	switch kind {
	case "installer":
		p.Output = Output{Kind: "installer", OutFormat: "raw"}
	case "iso":
		p.Output = Output{Kind: "iso", OutFormat: "raw"}
	case "kernel":
		p.Output = Output{Kind: "kernel", OutFormat: "raw"}
	case "initramfs":
		p.Output = Output{Kind: "initramfs", OutFormat: "raw"}
	case "metal":
		p.Output = Output{Kind: "image", ImageOptions: &ImageOptions{DiskSize: 1306525696, DiskFormat: "raw"}, OutFormat: ".xz"}
	default:
		return nil, nil, fmt.Errorf("unknown output %q: choose one of %s", kind, strings.Join(OutputKinds, ", "))
	}
	return p, warnings, nil
}

// knownReleases summarizes the releases of the extensions table.
func knownReleases() string {
	rs := extensions.Releases()
	if len(rs) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d releases, %s to %s", len(rs), rs[len(rs)-1], rs[0])
}

// Marshal encodes a profile as YAML.
func (p *Profile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ErrNoEngine means neither docker nor podman is installed.
var ErrNoEngine = errors.New("no container engine found: install Docker (https://docs.docker.com/engine/install/) or Podman (apt-get install podman), or pass --engine")

// FindEngine returns the container engine to use: the given one (which
// must be on PATH), else docker, else podman.
func FindEngine(want string, lookPath func(string) (string, error)) (string, error) {
	if want != "" {
		if want != "docker" && want != "podman" {
			return "", fmt.Errorf("--engine must be docker or podman, got %q", want)
		}
		p, err := lookPath(want)
		if err != nil {
			return "", fmt.Errorf("container engine %q not found on PATH: install it, or use --engine with the other one", want)
		}
		return p, nil
	}
	for _, e := range []string{"docker", "podman"} {
		if p, err := lookPath(e); err == nil {
			return p, nil
		}
	}
	return "", ErrNoEngine
}

// BuildCommand returns the command that runs the imager for a profile:
// `<engine> run --rm -i -v OUT:/out ghcr.io/siderolabs/imager:VERSION -`,
// with `--privileged -v /dev:/dev` for imagers before Talos 1.13 (1.13's
// runs rootless).
func BuildCommand(ctx context.Context, engine, outDir, talosVersion string, profile []byte, stdout, stderr io.Writer) *exec.Cmd {
	args := []string{"run", "--rm", "-i"}
	if minor, err := compat.TalosMinor(talosVersion); err != nil || minor < 13 {
		args = append(args, "--privileged", "-v", "/dev:/dev")
	}
	args = append(args, "-v", outDir+":/out", "ghcr.io/siderolabs/imager:"+talosVersion, "-")
	cmd := exec.CommandContext(ctx, engine, args...)
	cmd.Stdin = bytes.NewReader(profile)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd
}

// Build runs the imager container with the profile, writing outputs to outDir.
func Build(ctx context.Context, engine, outDir string, spec cluster.Spec, kind string, stdout, stderr io.Writer) error {
	p, err := NewProfile(spec, kind)
	if err != nil {
		return err
	}
	body, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("encoding profile: %w", err)
	}
	eng, err := FindEngine(engine, exec.LookPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	if err := BuildCommand(ctx, eng, outDir, spec.TalosVersion, body, stdout, stderr).Run(); err != nil {
		return fmt.Errorf("running imager with %s: %w", eng, err)
	}
	return nil
}
