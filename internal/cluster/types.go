// Package cluster defines dodai's cluster file (cluster.yaml): its Go types,
// parsing with precise positions, defaults, its own validation and located
// problems, and the layout of a cluster directory (Layout: every path).
// Every other part of dodai (config rendering, image, netboot, bootstrap,
// platform) reads the cluster through these types; commands open a cluster
// directory through internal/clusterdir, which runs this package's checks
// and the others'.
package cluster

// APIVersion and Kind identify a dodai cluster file.
const (
	APIVersion = "dodai.dev/v1alpha1"
	Kind       = "Cluster"
)

// Roles of a node.
const (
	RoleControlPlane = "controlplane"
	RoleWorker       = "worker"
)

// Boot network modes.
const (
	BootModeProxy = "proxy"
	BootModeDHCP  = "dhcp"
)

// Cluster is the whole cloud in one file.
type Cluster struct {
	// APIVersion must be dodai.dev/v1alpha1.
	APIVersion string `yaml:"apiVersion" json:"apiVersion" jsonschema:"enum=dodai.dev/v1alpha1"`
	// Kind must be Cluster.
	Kind     string   `yaml:"kind" json:"kind" jsonschema:"enum=Cluster"`
	Metadata Metadata `yaml:"metadata" json:"metadata"`
	Spec     Spec     `yaml:"spec" json:"spec"`
}

// Metadata names the cluster.
type Metadata struct {
	// Name of the cluster (DNS label): used as Talos cluster name and talosconfig context.
	Name string `yaml:"name" json:"name" jsonschema:"pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"`
}

// Spec describes the cluster.
type Spec struct {
	// TalosVersion is the Talos Linux release, v1.8.x to v1.13.x, e.g.
	// v1.13.9 (the default). It selects the machine config version contract
	// and the image.
	TalosVersion string `yaml:"talosVersion,omitempty" json:"talosVersion,omitempty"`
	// KubernetesVersion, e.g. v1.36.3 (the default); it must be one the
	// Talos release runs (Talos v1.13: v1.31.0 to v1.36.x).
	KubernetesVersion string `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	// Endpoint is the Kubernetes API URL, https://HOST:PORT.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// VIP is an optional shared control-plane address (Talos Layer2 VIP).
	VIP string `yaml:"vip,omitempty" json:"vip,omitempty"`
	// Network holds the pod/service CIDRs and DNS domain.
	Network ClusterNetwork `yaml:"network,omitempty" json:"network,omitempty"`
	// Image describes the Talos boot image.
	Image Image `yaml:"image,omitempty" json:"image,omitempty"`
	// Boot describes the provisioning network used by `dodai netboot`.
	Boot Boot `yaml:"boot,omitempty" json:"boot,omitempty"`
	// Nodes are the machines of the cluster.
	Nodes []Node `yaml:"nodes" json:"nodes"`
	// Patches are Talos config patches applied to every node, per role.
	Patches Patches `yaml:"patches,omitempty" json:"patches,omitempty"`
	// Platform selects the system components delivered by Flux.
	Platform Platform `yaml:"platform,omitempty" json:"platform,omitempty"`
}

// ClusterNetwork is the Kubernetes network layout.
type ClusterNetwork struct {
	// PodSubnets, default [10.244.0.0/16].
	PodSubnets []string `yaml:"podSubnets,omitempty" json:"podSubnets,omitempty"`
	// ServiceSubnets, default [10.96.0.0/12].
	ServiceSubnets []string `yaml:"serviceSubnets,omitempty" json:"serviceSubnets,omitempty"`
	// DNSDomain, default cluster.local.
	DNSDomain string `yaml:"dnsDomain,omitempty" json:"dnsDomain,omitempty"`
	// CNI is the Talos CNI setting: "flannel" (Talos default) or "none"
	// (when the platform installs the CNI, e.g. cilium or kube-ovn). Default: none.
	CNI string `yaml:"cni,omitempty" json:"cni,omitempty" jsonschema:"enum=none,enum=flannel"`
	// DisableKubeProxy turns off kube-proxy (cilium replaces it). Default false.
	DisableKubeProxy bool `yaml:"disableKubeProxy,omitempty" json:"disableKubeProxy,omitempty"`
}

// Image describes the Talos image: what the imager profile and the Image
// Factory schematic are built from.
type Image struct {
	// Platform, only "metal" is supported.
	Platform string `yaml:"platform,omitempty" json:"platform,omitempty" jsonschema:"enum=metal"`
	// Arch: amd64 (default) or arm64.
	Arch string `yaml:"arch,omitempty" json:"arch,omitempty" jsonschema:"enum=amd64,enum=arm64"`
	// SecureBoot builds a secure-boot image.
	SecureBoot bool `yaml:"secureBoot,omitempty" json:"secureBoot,omitempty"`
	// Extensions are official system extensions by name, e.g. siderolabs/drbd.
	Extensions []string `yaml:"extensions,omitempty" json:"extensions,omitempty"`
	// ExtensionImages pins extension container images (imager only), e.g.
	// registry.example.lan/siderolabs/drbd:9.3.3-v1.13.9. An official
	// extension without a pin gets the image published with the Talos
	// release (dodai carries that table for v1.8.0 to v1.13.9); others are
	// named ghcr.io/<name>:<talosVersion>, with a warning.
	ExtensionImages map[string]string `yaml:"extensionImages,omitempty" json:"extensionImages,omitempty"`
	// ExtraKernelArgs are appended to the kernel command line.
	ExtraKernelArgs []string `yaml:"extraKernelArgs,omitempty" json:"extraKernelArgs,omitempty"`
	// Installer overrides the installer image used in machine configs. Default:
	// the Image Factory installer for the cluster's schematic.
	Installer string `yaml:"installer,omitempty" json:"installer,omitempty"`
	// Factory is the Image Factory base URL, default https://factory.talos.dev.
	Factory string `yaml:"factory,omitempty" json:"factory,omitempty"`
}

// Boot is the provisioning network served by `dodai netboot`.
type Boot struct {
	// Interface the netboot server listens on.
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	// Mode: proxy (default, coexists with the site's DHCP) or dhcp (full server).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=proxy,enum=dhcp"`
	// Subnet of the boot network in CIDR form, e.g. 192.168.100.0/24.
	Subnet string `yaml:"subnet,omitempty" json:"subnet,omitempty"`
	// Range of dynamic addresses handed out in dhcp mode.
	Range *AddressRange `yaml:"range,omitempty" json:"range,omitempty"`
	// Router handed out in dhcp mode.
	Router string `yaml:"router,omitempty" json:"router,omitempty"`
	// DNS servers handed out in dhcp mode.
	DNS []string `yaml:"dns,omitempty" json:"dns,omitempty"`
	// LeaseTime in dhcp mode, a Go duration, default 1h.
	LeaseTime string `yaml:"leaseTime,omitempty" json:"leaseTime,omitempty"`
	// ServerAddress is the address of the netboot server as seen by the
	// machines (default: the interface's first IPv4 address).
	ServerAddress string `yaml:"serverAddress,omitempty" json:"serverAddress,omitempty"`
	// OnlyKnown answers only MACs listed in nodes.
	OnlyKnown bool `yaml:"onlyKnown,omitempty" json:"onlyKnown,omitempty"`
}

// AddressRange is an inclusive IPv4 range.
type AddressRange struct {
	Start string `yaml:"start" json:"start"`
	End   string `yaml:"end" json:"end"`
}

// Node is one machine.
type Node struct {
	// Name is the node's hostname and the name of its generated config.
	Name string `yaml:"name" json:"name"`
	// Role: controlplane or worker.
	Role string `yaml:"role" json:"role" jsonschema:"enum=controlplane,enum=worker"`
	// MACs of the machine's NICs; the first one identifies the machine and,
	// unless interface is set, selects the link that carries the address.
	MACs []string `yaml:"macs" json:"macs"`
	// InstallDisk chooses the disk Talos installs to.
	InstallDisk InstallDisk `yaml:"installDisk,omitempty" json:"installDisk,omitempty"`
	// Address is the node's static address in CIDR form, e.g. 192.168.100.11/24.
	// Empty: DHCP.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Gateway is the default route.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Nameservers for the node.
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	// Interface selects the link carrying the address, by MAC (Talos
	// deviceSelector.hardwareAddr). Default: the first of macs.
	Interface *Interface `yaml:"interface,omitempty" json:"interface,omitempty"`
	// Patches are Talos config patches for this node only (applied last).
	Patches []Patch `yaml:"patches,omitempty" json:"patches,omitempty"`
	// BMC is the machine's baseboard management controller, used by
	// `dodai power` and `dodai bootstrap --power`. Its credentials are never
	// in cluster.yaml: see bmc-credentials.yaml.
	BMC *BMC `yaml:"bmc,omitempty" json:"bmc,omitempty"`
}

// Interface selects a link by hardware address, never by kernel name.
type Interface struct {
	// MAC of the link (deviceSelector.hardwareAddr).
	MAC string `yaml:"mac,omitempty" json:"mac,omitempty"`
	// Driver optionally narrows the selector (deviceSelector.driver).
	Driver string `yaml:"driver,omitempty" json:"driver,omitempty"`
	// MTU of the link.
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// InstallDisk picks the install disk: an explicit path, or a selector.
type InstallDisk struct {
	// Path, e.g. /dev/sda or /dev/disk/by-id/...; exclusive with selector.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Selector matches the node's disks; exactly one must match.
	Selector *DiskSelector `yaml:"selector,omitempty" json:"selector,omitempty"`
}

// DiskSelector matches a disk by its properties (Talos installDiskSelector).
type DiskSelector struct {
	// Size, e.g. "500GB", ">= 100GB", "<= 2TB".
	Size string `yaml:"size,omitempty" json:"size,omitempty"`
	// Model glob, e.g. "Samsung SSD*".
	Model string `yaml:"model,omitempty" json:"model,omitempty"`
	// Serial number.
	Serial string `yaml:"serial,omitempty" json:"serial,omitempty"`
	// WWID (world wide identifier).
	WWID string `yaml:"wwid,omitempty" json:"wwid,omitempty"`
	// Type: ssd, hdd, nvme or sd.
	Type string `yaml:"type,omitempty" json:"type,omitempty" jsonschema:"enum=ssd,enum=hdd,enum=nvme,enum=sd"`
	// BusPath, e.g. /pci0000:00/0000:00:1f.2/...
	BusPath string `yaml:"busPath,omitempty" json:"busPath,omitempty"`
}

// Patches are Talos config patches by level: all nodes, then role, then node.
type Patches struct {
	All          []Patch `yaml:"all,omitempty" json:"all,omitempty"`
	ControlPlane []Patch `yaml:"controlplane,omitempty" json:"controlplane,omitempty"`
	Worker       []Patch `yaml:"worker,omitempty" json:"worker,omitempty"`
}

// Patch is one Talos config patch: a YAML mapping (strategic merge), a YAML
// list of RFC 6902 operations (JSON patch), or a string "@path" naming a
// patch file relative to the cluster directory.
type Patch struct {
	// Value is the decoded patch (map, list or "@file" string).
	Value any `yaml:"-" json:"-"`
	// Line and Column locate the patch in cluster.yaml.
	Line, Column int `yaml:"-" json:"-"`
}

// Platform selects the components Flux installs (see `dodai platform`).
type Platform struct {
	// Bundle: full, distro or hosted. Default full.
	Bundle string `yaml:"bundle,omitempty" json:"bundle,omitempty"`
	// Components overrides catalog components by name.
	Components map[string]ComponentOverride `yaml:"components,omitempty" json:"components,omitempty"`
	// Extra adds the user's own components.
	Extra []ExtraComponent `yaml:"extra,omitempty" json:"extra,omitempty"`
	// Mirror points every chart source at a mirror (air-gapped installs).
	Mirror *Mirror `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	// DropDependents drops dependency edges to components the user disabled
	// (spec.platform.components.X.enabled: false) instead of reporting an
	// error; the dependents stay enabled.
	DropDependents bool `yaml:"dropDependents,omitempty" json:"dropDependents,omitempty"`
	// Flux configures the Flux installation.
	Flux *FluxSettings `yaml:"flux,omitempty" json:"flux,omitempty"`
}

// ComponentOverride changes one catalog component.
type ComponentOverride struct {
	// Enabled turns a component on or off (default: as the bundle says).
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Values are merged over the component's default Helm values.
	Values map[string]any `yaml:"values,omitempty" json:"values,omitempty"`
	// Version overrides the pinned chart version.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
}

// ExtraComponent is a user-defined Helm chart delivered like catalog ones.
type ExtraComponent struct {
	Name        string `yaml:"name" json:"name"`
	Namespace   string `yaml:"namespace" json:"namespace"`
	ReleaseName string `yaml:"releaseName,omitempty" json:"releaseName,omitempty"`
	// Privileged namespaces get Pod Security "privileged" labels.
	Privileged bool `yaml:"privileged,omitempty" json:"privileged,omitempty"`
	// Repo is a Helm repository URL (https:// or oci://).
	Repo    string         `yaml:"repo" json:"repo"`
	Chart   string         `yaml:"chart" json:"chart"`
	Version string         `yaml:"version" json:"version"`
	Values  map[string]any `yaml:"values,omitempty" json:"values,omitempty"`
	// DependsOn names catalog or extra components.
	DependsOn []string `yaml:"dependsOn,omitempty" json:"dependsOn,omitempty"`
}

// Mirror rewrites chart sources.
type Mirror struct {
	// Helm is a Helm repository base URL that serves every catalog chart.
	Helm string `yaml:"helm,omitempty" json:"helm,omitempty"`
	// OCI is an OCI registry prefix, e.g. oci://registry.local/charts.
	OCI string `yaml:"oci,omitempty" json:"oci,omitempty"`
	// Git replaces the Git repository dodai's own charts (charts/) are read
	// from, e.g. an internal mirror of github.com/dodai-dev/dodai.
	Git string `yaml:"git,omitempty" json:"git,omitempty"`
}

// FluxSettings configures how dodai installs Flux.
type FluxSettings struct {
	// Version of Flux, e.g. v2.7.3.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Manifests is a local path or URL of Flux's install.yaml (mirror).
	Manifests string `yaml:"manifests,omitempty" json:"manifests,omitempty"`
}
