// Package machineconfig turns a cluster file and its secrets bundle into Talos
// machine configs (one per node) and a talosconfig, with Talos' own
// pkg/machinery: generate.NewInput for the base config, machinery's typed
// v1alpha1 structs for dodai's per-node settings, configpatcher for the
// user's patches (all < role < node), and machinery's validator for metal.
package machineconfig

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/image"
)

// ErrNoSecrets means the cluster directory has no secrets.yaml.
var ErrNoSecrets = errors.New("secrets.yaml not found: run `dodai init` first (it creates secrets once and never replaces them)")

// InitSecrets creates DIR/secrets.yaml with a new machinery secrets bundle
// if, and only if, it does not exist. It never replaces or regenerates an
// existing bundle; created reports whether a new one was written.
func InitSecrets(dir, talosVersion string) (created bool, err error) {
	path := cluster.At(dir).Secrets()
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("checking secrets: %w", err)
	}
	contract, err := config.ParseContractFromVersion(talosVersion)
	if err != nil {
		return false, fmt.Errorf("parsing Talos version %q: %w", talosVersion, err)
	}
	bundle, err := secrets.NewBundle(secrets.NewClock(), contract)
	if err != nil {
		return false, fmt.Errorf("generating secrets: %w", err)
	}
	data, err := yaml.Marshal(bundle)
	if err != nil {
		return false, fmt.Errorf("encoding secrets: %w", err)
	}
	if err := fsutil.CreateExclusive(path, data, 0o600); err != nil {
		if errors.Is(err, fsutil.ErrExists) {
			return false, nil // someone else created it first: keep theirs
		}
		return false, err
	}
	return true, nil
}

// LoadSecrets reads DIR/secrets.yaml.
func LoadSecrets(dir string) (*secrets.Bundle, error) {
	path := cluster.At(dir).Secrets()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoSecrets
	}
	b, err := secrets.LoadBundle(path)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%s is not a valid secrets bundle: %w", path, err)
	}
	return b, nil
}

// Renderer renders the configs of one cluster.
type Renderer struct {
	src     *cluster.Source
	spec    *cluster.Spec
	name    string
	bundle  *secrets.Bundle
	schemID string
}

// New loads the cluster directory's secrets (never generating them) and
// prepares rendering.
func New(src *cluster.Source) (*Renderer, error) {
	bundle, err := LoadSecrets(src.Dir)
	if err != nil {
		return nil, err
	}
	return NewWithSecrets(src, bundle)
}

// NewWithSecrets prepares rendering with an already loaded bundle.
func NewWithSecrets(src *cluster.Source, bundle *secrets.Bundle) (*Renderer, error) {
	id, err := image.SchematicID(src.Cluster.Spec.Image)
	if err != nil {
		return nil, fmt.Errorf("computing schematic ID: %w", err)
	}
	return &Renderer{src: src, spec: &src.Cluster.Spec, name: src.Cluster.Metadata.Name, bundle: bundle, schemID: id}, nil
}

// Secrets returns the cluster's secrets bundle.
func (r *Renderer) Secrets() *secrets.Bundle { return r.bundle }

// NodeOptions adjust one node's rendering to what bootstrap found on the node.
type NodeOptions struct {
	// InstallDisk, when set, replaces the node's disk selector with this
	// resolved device path.
	InstallDisk string
	// TalosVersion, when set, selects the config version contract (the
	// version the node actually runs) instead of spec.talosVersion.
	TalosVersion string
}

// NodeConfig renders the validated machine config of one node.
func (r *Renderer) NodeConfig(name string) ([]byte, error) {
	return r.NodeConfigFor(name, NodeOptions{})
}

// Node returns the node of that name.
func (r *Renderer) Node(name string) (*cluster.Node, error) {
	for i := range r.spec.Nodes {
		if r.spec.Nodes[i].Name == name {
			return &r.spec.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("no node %q in %s", name, r.src.File)
}

// NodeConfigFor renders a node's config with bootstrap-time adjustments.
func (r *Renderer) NodeConfigFor(name string, opts NodeOptions) ([]byte, error) {
	node, err := r.Node(name)
	if err != nil {
		return nil, err
	}
	cfg, err := r.nodeProvider(node, opts)
	if err != nil {
		return nil, fmt.Errorf("rendering config of node %s: %w", name, err)
	}
	out, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, fmt.Errorf("encoding config of node %s: %w", name, err)
	}
	return out, nil
}

func (r *Renderer) contract(version string) (*config.VersionContract, error) {
	if version == "" {
		version = r.spec.TalosVersion
	}
	if err := cluster.CheckTalosVersion(version); err != nil {
		return nil, err
	}
	return config.ParseContractFromVersion(version)
}

func (r *Renderer) nodeProvider(node *cluster.Node, opts NodeOptions) (config.Provider, error) {
	contract, err := r.contract(opts.TalosVersion)
	if err != nil {
		return nil, err
	}
	s := r.spec
	genOpts := []generate.Option{
		generate.WithSecretsBundle(r.bundle),
		generate.WithVersionContract(contract),
		generate.WithInstallImage(image.InstallerImage(*s, r.schemID)),
		generate.WithDNSDomain(s.Network.DNSDomain),
		generate.WithEndpointList(r.endpoints()),
		generate.WithAdditionalSubjectAltNames(r.sans()),
	}
	// Talos 1.12+ boots with the kernel command line of the image (the
	// UKI's, grubUseUKICmdline) and refuses install.extraKernelArgs with
	// it: the factory installer already carries spec.image.extraKernelArgs
	// through the schematic. A user's own installer image may not, so it
	// keeps them in the config and GRUB's own command line.
	ownInstaller := s.Image.Installer != ""
	kernelArgsInImage := contract.GrubUseUKICmdlineDefault() && !ownInstaller
	if len(s.Image.ExtraKernelArgs) > 0 && !kernelArgsInImage {
		genOpts = append(genOpts, generate.WithInstallExtraKernelArgs(s.Image.ExtraKernelArgs))
	}
	if s.Network.CNI == "none" {
		genOpts = append(genOpts, generate.WithClusterCNIConfig(&v1alpha1.CNIConfig{CNIName: "none"}))
	}
	multidoc := contract.MultidocNetworkConfigSupported()
	if !multidoc {
		genOpts = append(genOpts, generate.WithNetworkOptions(r.legacyNetworkOptions(node)...))
	}
	installDisk := opts.InstallDisk
	if installDisk == "" {
		installDisk = node.InstallDisk.Path
	}
	if installDisk != "" {
		genOpts = append(genOpts, generate.WithInstallDisk(installDisk))
	}
	in, err := generate.NewInput(r.name, s.Endpoint, strings.TrimPrefix(s.KubernetesVersion, "v"), genOpts...)
	if err != nil {
		return nil, fmt.Errorf("preparing config input: %w", err)
	}
	in.PodNet = append([]string(nil), s.Network.PodSubnets...)
	in.ServiceNet = append([]string(nil), s.Network.ServiceSubnets...)
	typ := machine.TypeWorker
	if node.Role == cluster.RoleControlPlane {
		typ = machine.TypeControlPlane
	}
	base, err := in.Config(typ)
	if err != nil {
		return nil, fmt.Errorf("generating %s config: %w", typ, err)
	}
	cfg := base.Clone()
	raw := cfg.RawV1Alpha1()
	if raw == nil {
		return nil, errors.New("generated config has no v1alpha1 document")
	}
	if err := r.applyNodeSettings(raw, node, opts); err != nil {
		return nil, err
	}
	if len(s.Image.ExtraKernelArgs) > 0 && ownInstaller && contract.GrubUseUKICmdlineDefault() {
		raw.MachineConfig.MachineInstall.InstallGrubUseUKICmdline = ptr(false)
	}
	if multidoc {
		docs, err := r.networkDocuments(node)
		if err != nil {
			return nil, err
		}
		if cfg, err = withNetworkDocuments(cfg, docs); err != nil {
			return nil, err
		}
	} else {
		r.legacyNetworkSettings(raw, node)
	}
	cfg, err = r.applyPatches(cfg, node)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.Validate(metalMode{}); err != nil {
		return nil, fmt.Errorf("Talos rejects the config for metal: %w", err)
	}
	return cfg, nil
}

// linkSelector selects the node's link by MAC, never by kernel name.
func (r *Renderer) linkSelector(node *cluster.Node) v1alpha1.NetworkDeviceSelector {
	sel := v1alpha1.NetworkDeviceSelector{}
	if node.Interface != nil && node.Interface.MAC != "" {
		sel.NetworkDeviceHardwareAddress, _ = cluster.ParseMAC(node.Interface.MAC)
		sel.NetworkDeviceKernelDriver = node.Interface.Driver
	} else if len(node.MACs) > 0 {
		sel.NetworkDeviceHardwareAddress, _ = cluster.ParseMAC(node.MACs[0])
	}
	return sel
}

// applyNodeSettings sets what generate has no option for, on machinery's
// own typed config.
func (r *Renderer) applyNodeSettings(c *v1alpha1.Config, node *cluster.Node, opts NodeOptions) error {
	m := c.MachineConfig
	if opts.InstallDisk == "" && node.InstallDisk.Path == "" && node.InstallDisk.Selector != nil {
		sel, err := diskSelector(node.InstallDisk.Selector)
		if err != nil {
			return err
		}
		if m.MachineInstall == nil {
			m.MachineInstall = &v1alpha1.InstallConfig{}
		}
		m.MachineInstall.InstallDisk = ""
		m.MachineInstall.InstallDiskSelector = sel
	}
	if r.spec.Network.DisableKubeProxy {
		c.ClusterConfig.ProxyConfig = &v1alpha1.ProxyConfig{Disabled: ptr(true)}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func diskSelector(s *cluster.DiskSelector) (*v1alpha1.InstallDiskSelector, error) {
	sel := &v1alpha1.InstallDiskSelector{Model: s.Model, Serial: s.Serial, WWID: s.WWID, BusPath: s.BusPath}
	if s.Type != "" {
		sel.Type = v1alpha1.InstallDiskType(s.Type)
	}
	if s.Size != "" {
		op, n, err := cluster.ParseSizeMatcher(s.Size)
		if err != nil {
			return nil, err
		}
		expr := fmt.Sprintf("%d", n)
		if op != "==" {
			expr = op + " " + expr
		}
		var m v1alpha1.InstallDiskSizeMatcher
		if err := yaml.Unmarshal([]byte(fmt.Sprintf("%q", expr)), &m); err != nil {
			return nil, fmt.Errorf("disk size %q: %w", s.Size, err)
		}
		sel.Size = &m
	}
	return sel, nil
}

// applyPatches applies the user's patches: all nodes, then role, then node.
func (r *Renderer) applyPatches(cfg config.Provider, node *cluster.Node) (config.Provider, error) {
	type level struct {
		path    string
		patches []cluster.Patch
	}
	ps := r.spec.Patches
	rolePatches := ps.Worker
	rolePath := "spec.patches.worker"
	if node.Role == cluster.RoleControlPlane {
		rolePatches, rolePath = ps.ControlPlane, "spec.patches.controlplane"
	}
	idx := 0
	for i := range r.spec.Nodes {
		if r.spec.Nodes[i].Name == node.Name {
			idx = i
		}
	}
	levels := []level{{"spec.patches.all", ps.All}, {rolePath, rolePatches}, {fmt.Sprintf("spec.nodes[%d].patches", idx), node.Patches}}
	for _, l := range levels {
		for i, p := range l.patches {
			where := fmt.Sprintf("%s:%d:%d: %s[%d]", r.src.File, p.Line, p.Column, l.path, i)
			b, err := cluster.PatchBytes(r.src.Dir, p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			patch, err := configpatcher.LoadPatch(b)
			if err != nil {
				return nil, fmt.Errorf("%s: loading patch: %w", where, err)
			}
			if cfg, err = applyPatch(cfg, patch); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return cfg, nil
}

// applyPatch applies one user patch. Strategic merge patches apply to the
// whole config; JSON (RFC 6902) patches address the v1alpha1 document, as
// they did before Talos 1.12 made configs multi-document (machinery applies
// them to single-document configs only), so users' JSON patches keep
// working across Talos releases.
func applyPatch(cfg config.Provider, patch configpatcher.Patch) (config.Provider, error) {
	apply := func(in config.Provider) (config.Provider, error) {
		out, err := configpatcher.Apply(configpatcher.WithConfig(in), []configpatcher.Patch{patch})
		if err != nil {
			return nil, fmt.Errorf("applying patch: %w", err)
		}
		patched, err := out.Config()
		if err != nil {
			return nil, fmt.Errorf("patched config: %w", err)
		}
		return patched, nil
	}
	if _, merge := patch.(configpatcher.StrategicMergePatch); merge || len(cfg.Documents()) == 1 {
		return apply(cfg)
	}
	raw := cfg.RawV1Alpha1()
	if raw == nil {
		return nil, errors.New("applying patch: a JSON patch needs the v1alpha1 document")
	}
	patched, err := apply(container.NewV1Alpha1(raw))
	if err != nil {
		return nil, err
	}
	if patched.RawV1Alpha1() == nil {
		return nil, errors.New("applying patch: the JSON patch removed the v1alpha1 document")
	}
	docs := []talosconfig.Document{}
	for _, d := range cfg.Documents() {
		if _, isV1 := d.(*v1alpha1.Config); isV1 {
			d = patched.RawV1Alpha1()
		}
		docs = append(docs, d)
	}
	out, err := container.New(docs...)
	if err != nil {
		return nil, fmt.Errorf("patched config: %w", err)
	}
	return out, nil
}

// endpoints are the talosconfig endpoints: control-plane node addresses,
// never the VIP (it only exists once etcd is up).
func (r *Renderer) endpoints() []string {
	var eps []string
	for _, n := range r.spec.Nodes {
		if n.Role != cluster.RoleControlPlane || n.Address == "" {
			continue
		}
		if p, err := netip.ParsePrefix(n.Address); err == nil {
			eps = append(eps, p.Addr().String())
		}
	}
	if len(eps) == 0 {
		if u, err := url.Parse(r.spec.Endpoint); err == nil && u.Hostname() != r.spec.VIP {
			eps = append(eps, u.Hostname())
		}
	}
	return eps
}

// sans are extra certificate names: the VIP and the endpoint host.
func (r *Renderer) sans() []string {
	var sans []string
	if r.spec.VIP != "" {
		sans = append(sans, r.spec.VIP)
	}
	if u, err := url.Parse(r.spec.Endpoint); err == nil && u.Hostname() != "" && u.Hostname() != r.spec.VIP {
		sans = append(sans, u.Hostname())
	}
	return sans
}

// Talosconfig returns a talosconfig whose endpoints are the control-plane
// node addresses, with a new admin client certificate signed by the
// cluster's OS CA.
func (r *Renderer) Talosconfig() (*clientconfig.Config, error) {
	cert, err := r.bundle.GenerateTalosAPIClientCertificate(role.MakeSet(role.Admin))
	if err != nil {
		return nil, fmt.Errorf("issuing talosconfig client certificate: %w", err)
	}
	cfg := clientconfig.NewConfig(r.name, r.endpoints(), r.bundle.Certs.OS.Crt, cert)
	ctx := cfg.Contexts[r.name]
	ctx.Nodes = r.endpoints()
	return cfg, nil
}

// TalosconfigCurrent reports whether an existing talosconfig already fits
// the cluster (same CA, context and endpoints), so it need not be replaced.
func (r *Renderer) TalosconfigCurrent(existing []byte) bool {
	cfg, err := clientconfig.FromBytes(existing)
	if err != nil {
		return false
	}
	ctx, ok := cfg.Contexts[r.name]
	if !ok || cfg.Context != r.name {
		return false
	}
	if ctx.CA != encodeB64(r.bundle.Certs.OS.Crt) {
		return false
	}
	return strings.Join(ctx.Endpoints, ",") == strings.Join(r.endpoints(), ",")
}

// EnsureTalosconfig returns the talosconfig at path when it already fits
// the cluster (TalosconfigCurrent), else issues a new one and writes it
// there atomically with mode 0600. written reports whether it wrote.
func (r *Renderer) EnsureTalosconfig(path string) (cfg *clientconfig.Config, written bool, err error) {
	if b, err := os.ReadFile(path); err == nil && r.TalosconfigCurrent(b) {
		if cfg, err := clientconfig.FromBytes(b); err == nil {
			return cfg, false, nil
		}
	}
	if cfg, err = r.Talosconfig(); err != nil {
		return nil, false, err
	}
	b, err := cfg.Bytes()
	if err != nil {
		return nil, false, fmt.Errorf("encoding talosconfig: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, false, err
	}
	return cfg, true, nil
}

// metalMode is machinery's validation mode for bare metal: installs to disk,
// not in a container.
type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
