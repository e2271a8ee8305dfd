package cluster

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Defaults used when the cluster file leaves a field empty.
const (
	DefaultTalosVersion      = compat.DefaultTalosVersion
	DefaultKubernetesVersion = compat.DefaultKubernetesVersion
	DefaultPodSubnet         = "10.244.0.0/16"
	DefaultServiceSubnet     = "10.96.0.0/12"
	DefaultDNSDomain         = "cluster.local"
	DefaultFactory           = "https://factory.talos.dev"
	DefaultLeaseTime         = "1h"
	DefaultBundle            = "full"
)

// Bundles known to the platform catalog.
var Bundles = []string{"full", "distro", "hosted"}

// Default fills empty fields with dodai's defaults. It is idempotent.
func Default(c *Cluster) {
	s := &c.Spec
	if s.TalosVersion == "" {
		s.TalosVersion = DefaultTalosVersion
	}
	if s.KubernetesVersion == "" {
		// The default Kubernetes of the cluster's Talos minor (a file that
		// names only Talos v1.11.5 gets v1.34.1, which that Talos runs).
		s.KubernetesVersion = compat.DefaultKubernetesFor(s.TalosVersion)
	}
	if len(s.Network.PodSubnets) == 0 {
		s.Network.PodSubnets = []string{DefaultPodSubnet}
	}
	if len(s.Network.ServiceSubnets) == 0 {
		s.Network.ServiceSubnets = []string{DefaultServiceSubnet}
	}
	if s.Network.DNSDomain == "" {
		s.Network.DNSDomain = DefaultDNSDomain
	}
	if s.Network.CNI == "" {
		s.Network.CNI = "none"
	}
	if s.Image.Platform == "" {
		s.Image.Platform = "metal"
	}
	if s.Image.Arch == "" {
		s.Image.Arch = "amd64"
	}
	if s.Image.Factory == "" {
		s.Image.Factory = DefaultFactory
	}
	if s.Boot.Mode == "" {
		s.Boot.Mode = BootModeProxy
	}
	if s.Boot.LeaseTime == "" {
		s.Boot.LeaseTime = DefaultLeaseTime
	}
	if s.Platform.Bundle == "" {
		s.Platform.Bundle = DefaultBundle
	}
	defaultBMCs(s)
}

var (
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	versionRe  = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	extNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$`)
	diskSizeRe = regexp.MustCompile(`^(>=|<=|>|<|==)?\s*(\d+(\.\d+)?)\s*([kKMGTP]i?B|B)?$`)
)

// reservedNamespaces can't hold platform components (see platform()).
var reservedNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true, "flux-system": true}

// ValidName reports whether s is a valid cluster or node name (a DNS label).
func ValidName(s string) bool { return dnsLabelRe.MatchString(s) }

// Validate checks the semantics of a parsed cluster file and returns every
// problem found, errors and warnings, in file order.
func Validate(src *Source) Problems {
	v := validator{src: src}
	v.run()
	v.probs.Sort()
	return v.probs
}

type validator struct {
	src   *Source
	probs Problems
}

func (v *validator) errf(path, format string, args ...any) {
	v.probs = append(v.probs, v.src.Problem(Error, path, format, args...))
}

func (v *validator) warnf(path, format string, args ...any) {
	v.probs = append(v.probs, v.src.Problem(Warning, path, format, args...))
}

func (v *validator) run() {
	c := v.src.Cluster
	if c.APIVersion != APIVersion {
		v.errf("apiVersion", "must be %q, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		v.errf("kind", "must be %q, got %q", Kind, c.Kind)
	}
	switch {
	case c.Metadata.Name == "":
		v.errf("metadata.name", "is required")
	case !dnsLabelRe.MatchString(c.Metadata.Name):
		v.errf("metadata.name", "%q is not a valid name (lowercase letters, digits and '-', at most 63)", c.Metadata.Name)
	}
	s := &c.Spec
	if !versionRe.MatchString(s.TalosVersion) {
		v.errf("spec.talosVersion", "%q is not a version like %s", s.TalosVersion, DefaultTalosVersion)
	} else if err := CheckTalosVersion(s.TalosVersion); err != nil {
		v.errf("spec.talosVersion", "%v", err)
	}
	if !versionRe.MatchString(s.KubernetesVersion) {
		v.errf("spec.kubernetesVersion", "%q is not a version like %s", s.KubernetesVersion, DefaultKubernetesVersion)
	} else if CheckTalosVersion(s.TalosVersion) == nil {
		if err := compat.CheckKubernetes(s.TalosVersion, s.KubernetesVersion); err != nil {
			v.errf("spec.kubernetesVersion", "%v", err)
		}
	}
	v.endpoint()
	v.network()
	v.image()
	v.boot()
	v.nodes()
	v.bmcs()
	v.patches()
	v.platform()
}

func (v *validator) endpoint() {
	s := &v.src.Cluster.Spec
	if s.Endpoint == "" {
		v.errf("spec.endpoint", "is required (the Kubernetes API URL, e.g. https://192.168.100.10:6443)")
		return
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" {
		v.errf("spec.endpoint", "%q is not a URL like https://192.168.100.10:6443", s.Endpoint)
		return
	}
	if u.Scheme != "https" {
		v.errf("spec.endpoint", "%q must use https", s.Endpoint)
	}
	if u.Path != "" && u.Path != "/" {
		v.errf("spec.endpoint", "%q must not have a path", s.Endpoint)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.errf("spec.endpoint", "%q has an invalid port", s.Endpoint)
		}
	}
	if s.VIP != "" {
		vip, err := netip.ParseAddr(s.VIP)
		if err != nil {
			v.errf("spec.vip", "%q is not an IP address", s.VIP)
			return
		}
		if r := s.Boot.Range; r != nil {
			start, e1 := netip.ParseAddr(r.Start)
			end, e2 := netip.ParseAddr(r.End)
			if e1 == nil && e2 == nil && vip.Compare(start) >= 0 && vip.Compare(end) <= 0 {
				v.errf("spec.vip", "%s is inside the DHCP range %s-%s: DHCP could hand it to a machine", vip, start, end)
			}
		}
		for i, n := range s.Nodes {
			if p, err := netip.ParsePrefix(n.Address); err == nil && p.Addr() == vip {
				v.errf("spec.vip", "%s is also the address of node %q (spec.nodes[%d]); a VIP must be a free address", vip, n.Name, i)
			}
		}
	}
	// A literal IP endpoint should be the VIP or a control-plane address.
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		ok := s.VIP != "" && s.VIP == ip.String()
		for _, n := range s.Nodes {
			if p, err := netip.ParsePrefix(n.Address); err == nil && p.Addr() == ip && n.Role == RoleControlPlane {
				ok = true
			}
		}
		if !ok && len(s.Nodes) > 0 {
			v.warnf("spec.endpoint", "%s is neither the VIP nor a control-plane node address; make sure it reaches the Kubernetes API (a load balancer?)", ip)
		}
	}
}

func (v *validator) network() {
	n := &v.src.Cluster.Spec.Network
	for i, c := range n.PodSubnets {
		if _, err := netip.ParsePrefix(c); err != nil {
			v.errf(fmt.Sprintf("spec.network.podSubnets[%d]", i), "%q is not a CIDR", c)
		}
	}
	for i, c := range n.ServiceSubnets {
		if _, err := netip.ParsePrefix(c); err != nil {
			v.errf(fmt.Sprintf("spec.network.serviceSubnets[%d]", i), "%q is not a CIDR", c)
		}
	}
	for i, a := range n.PodSubnets {
		for j, b := range n.ServiceSubnets {
			pa, e1 := netip.ParsePrefix(a)
			pb, e2 := netip.ParsePrefix(b)
			if e1 == nil && e2 == nil && pa.Overlaps(pb) {
				v.errf(fmt.Sprintf("spec.network.serviceSubnets[%d]", j), "%s overlaps pod subnet %s (spec.network.podSubnets[%d])", b, a, i)
			}
		}
	}
	if !dnsDomainOK(n.DNSDomain) {
		v.errf("spec.network.dnsDomain", "%q is not a DNS domain", n.DNSDomain)
	}
	if n.CNI != "none" && n.CNI != "flannel" {
		v.errf("spec.network.cni", "must be none or flannel, got %q", n.CNI)
	}
}

func dnsDomainOK(d string) bool {
	for _, l := range strings.Split(d, ".") {
		if !dnsLabelRe.MatchString(l) {
			return false
		}
	}
	return d != ""
}

func (v *validator) image() {
	im := &v.src.Cluster.Spec.Image
	if im.Platform != "metal" {
		v.errf("spec.image.platform", "only \"metal\" is supported, got %q", im.Platform)
	}
	if im.Arch != "amd64" && im.Arch != "arm64" {
		v.errf("spec.image.arch", "must be amd64 or arm64, got %q", im.Arch)
	}
	seen := map[string]int{}
	for i, e := range im.Extensions {
		p := fmt.Sprintf("spec.image.extensions[%d]", i)
		switch {
		case !extNameRe.MatchString(e):
			v.errf(p, "%q is not an extension name like siderolabs/drbd", e)
		case !KnownExtension(e):
			v.warnf(p, "%q is not an official Talos system extension; the Image Factory will reject it", e)
		}
		if j, dup := seen[e]; dup {
			v.errf(p, "%q is listed twice (also spec.image.extensions[%d])", e, j)
		}
		seen[e] = i
	}
	for name := range im.ExtensionImages {
		if _, ok := seen[name]; !ok {
			v.errf("spec.image.extensionImages."+name, "%q is not in spec.image.extensions", name)
		}
	}
	for i, a := range im.ExtraKernelArgs {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " \t\n") {
			v.errf(fmt.Sprintf("spec.image.extraKernelArgs[%d]", i), "%q must be one non-empty argument without spaces", a)
		}
	}
	if im.Factory != "" {
		if u, err := url.Parse(im.Factory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.errf("spec.image.factory", "%q is not an http(s) URL", im.Factory)
		}
	}
}

func (v *validator) boot() {
	b := &v.src.Cluster.Spec.Boot
	if b.Mode != BootModeProxy && b.Mode != BootModeDHCP {
		v.errf("spec.boot.mode", "must be proxy or dhcp, got %q", b.Mode)
	}
	var subnet netip.Prefix
	if b.Subnet != "" {
		p, err := netip.ParsePrefix(b.Subnet)
		if err != nil || !p.Addr().Is4() {
			v.errf("spec.boot.subnet", "%q is not an IPv4 CIDR", b.Subnet)
		} else {
			subnet = p.Masked()
		}
	}
	if b.Mode == BootModeDHCP {
		if b.Subnet == "" {
			v.errf("spec.boot.subnet", "is required in dhcp mode")
		}
		if b.Range == nil {
			v.errf("spec.boot.range", "is required in dhcp mode")
		}
	}
	if r := b.Range; r != nil {
		start, e1 := netip.ParseAddr(r.Start)
		end, e2 := netip.ParseAddr(r.End)
		if e1 != nil || !start.Is4() {
			v.errf("spec.boot.range.start", "%q is not an IPv4 address", r.Start)
		}
		if e2 != nil || !end.Is4() {
			v.errf("spec.boot.range.end", "%q is not an IPv4 address", r.End)
		}
		if e1 == nil && e2 == nil {
			if start.Compare(end) > 0 {
				v.errf("spec.boot.range", "start %s is after end %s", start, end)
			}
			if subnet.IsValid() && (!subnet.Contains(start) || !subnet.Contains(end)) {
				v.errf("spec.boot.range", "%s-%s is not inside the boot subnet %s", start, end, subnet)
			}
		}
	}
	if b.Router != "" {
		ip, err := netip.ParseAddr(b.Router)
		if err != nil {
			v.errf("spec.boot.router", "%q is not an IP address", b.Router)
		} else if subnet.IsValid() && !subnet.Contains(ip) {
			v.errf("spec.boot.router", "%s is outside the boot subnet %s", ip, subnet)
		}
	}
	for i, d := range b.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			v.errf(fmt.Sprintf("spec.boot.dns[%d]", i), "%q is not an IP address", d)
		}
	}
	if d, err := time.ParseDuration(b.LeaseTime); err != nil || d < time.Minute {
		v.errf("spec.boot.leaseTime", "%q is not a duration of at least 1m (e.g. 1h)", b.LeaseTime)
	}
	if b.ServerAddress != "" {
		if _, err := netip.ParseAddr(b.ServerAddress); err != nil {
			v.errf("spec.boot.serverAddress", "%q is not an IP address", b.ServerAddress)
		}
	}
}

func (v *validator) nodes() {
	s := &v.src.Cluster.Spec
	if len(s.Nodes) == 0 {
		v.errf("spec.nodes", "at least one node is required")
		return
	}
	var subnet netip.Prefix
	if p, err := netip.ParsePrefix(s.Boot.Subnet); err == nil {
		subnet = p.Masked()
	}
	names := map[string]int{}
	macs := map[string]string{}
	addrs := map[netip.Addr]int{}
	cps := 0
	for i, n := range s.Nodes {
		p := fmt.Sprintf("spec.nodes[%d]", i)
		switch {
		case n.Name == "":
			v.errf(p+".name", "is required")
		case !dnsLabelRe.MatchString(n.Name):
			v.errf(p+".name", "%q is not a valid hostname (lowercase letters, digits and '-')", n.Name)
		}
		if j, dup := names[n.Name]; dup && n.Name != "" {
			v.errf(p+".name", "%q is used twice (also spec.nodes[%d])", n.Name, j)
		}
		names[n.Name] = i
		switch n.Role {
		case RoleControlPlane:
			cps++
		case RoleWorker:
		case "":
			v.errf(p+".role", "is required (controlplane or worker)")
		default:
			v.errf(p+".role", "must be controlplane or worker, got %q", n.Role)
		}
		if len(n.MACs) == 0 {
			v.errf(p+".macs", "at least one MAC address is required")
		}
		nodeMACs := map[string]bool{}
		for j, m := range n.MACs {
			mp := fmt.Sprintf("%s.macs[%d]", p, j)
			hw, err := ParseMAC(m)
			if err != nil {
				v.errf(mp, "%q is not a MAC address", m)
				continue
			}
			if other, dup := macs[hw]; dup {
				v.errf(mp, "%s is used twice (also %s)", hw, other)
				continue
			}
			macs[hw] = mp
			nodeMACs[hw] = true
		}
		var prefix netip.Prefix
		if n.Address != "" {
			pr, err := netip.ParsePrefix(n.Address)
			if err != nil {
				if _, e := netip.ParseAddr(n.Address); e == nil {
					v.errf(p+".address", "%q needs a prefix length, e.g. %s/24", n.Address, n.Address)
				} else {
					v.errf(p+".address", "%q is not an address in CIDR form like 192.168.100.11/24", n.Address)
				}
			} else {
				prefix = pr
				if j, dup := addrs[pr.Addr()]; dup {
					v.errf(p+".address", "%s is used twice (also spec.nodes[%d])", pr.Addr(), j)
				}
				addrs[pr.Addr()] = i
				if pr.Addr() == pr.Masked().Addr() && pr.Bits() < 31 {
					v.errf(p+".address", "%s is the network address of %s", pr.Addr(), pr.Masked())
				}
				if subnet.IsValid() && !subnet.Contains(pr.Addr()) {
					v.errf(p+".address", "%s is outside the boot subnet %s", pr.Addr(), subnet)
				}
				if r := s.Boot.Range; r != nil {
					start, e1 := netip.ParseAddr(r.Start)
					end, e2 := netip.ParseAddr(r.End)
					if e1 == nil && e2 == nil && pr.Addr().Compare(start) >= 0 && pr.Addr().Compare(end) <= 0 {
						v.errf(p+".address", "%s is inside the DHCP range %s-%s", pr.Addr(), start, end)
					}
				}
			}
		}
		if n.Gateway != "" {
			gw, err := netip.ParseAddr(n.Gateway)
			switch {
			case err != nil:
				v.errf(p+".gateway", "%q is not an IP address", n.Gateway)
			case prefix.IsValid() && !prefix.Masked().Contains(gw):
				v.errf(p+".gateway", "%s is outside the node's subnet %s", gw, prefix.Masked())
			}
			if n.Address == "" {
				v.errf(p+".gateway", "is set but address is not")
			}
		}
		for j, d := range n.Nameservers {
			if _, err := netip.ParseAddr(d); err != nil {
				v.errf(fmt.Sprintf("%s.nameservers[%d]", p, j), "%q is not an IP address", d)
			}
		}
		if n.Interface != nil {
			ip := p + ".interface"
			switch {
			case n.Interface.MAC == "":
				v.errf(ip+".mac", "is required: links are chosen by MAC, not by name like eth0")
			default:
				hw, err := ParseMAC(n.Interface.MAC)
				if err != nil {
					v.errf(ip+".mac", "%q is not a MAC address", n.Interface.MAC)
				} else if !nodeMACs[hw] {
					v.warnf(ip+".mac", "%s is not one of the node's macs", hw)
				}
			}
			if n.Interface.MTU != 0 && (n.Interface.MTU < 576 || n.Interface.MTU > 9216) {
				v.errf(ip+".mtu", "%d is not between 576 and 9216", n.Interface.MTU)
			}
		}
		v.installDisk(p+".installDisk", n.InstallDisk)
		for j, pt := range n.Patches {
			v.patch(fmt.Sprintf("%s.patches[%d]", p, j), pt)
		}
	}
	switch {
	case cps == 0:
		v.errf("spec.nodes", "no node has role controlplane; a cluster needs at least one")
	case cps%2 == 0:
		v.warnf("spec.nodes", "%d control-plane nodes: an even number tolerates no more failures than %d and risks etcd split-brain; use an odd number", cps, cps-1)
	}
}

func (v *validator) installDisk(p string, d InstallDisk) {
	switch {
	case d.Path != "" && d.Selector != nil:
		v.errf(p, "set either path or selector, not both")
	case d.Path == "" && d.Selector == nil:
		v.errf(p, "is required: an explicit path or a selector (size, model, serial, wwid, type)")
	case d.Path != "":
		if !strings.HasPrefix(d.Path, "/dev/") {
			v.errf(p+".path", "%q must be a device path under /dev/, e.g. /dev/sda", d.Path)
		}
	default:
		s := d.Selector
		if *s == (DiskSelector{}) {
			v.errf(p+".selector", "is empty: set at least one of size, model, serial, wwid, type, busPath")
		}
		if s.Size != "" {
			if _, _, err := ParseSizeMatcher(s.Size); err != nil {
				v.errf(p+".selector.size", "%v", err)
			}
		}
		switch s.Type {
		case "", "ssd", "hdd", "nvme", "sd":
		default:
			v.errf(p+".selector.type", "must be one of ssd, hdd, nvme, sd, got %q", s.Type)
		}
	}
}

func (v *validator) patches() {
	ps := &v.src.Cluster.Spec.Patches
	for i, p := range ps.All {
		v.patch(fmt.Sprintf("spec.patches.all[%d]", i), p)
	}
	for i, p := range ps.ControlPlane {
		v.patch(fmt.Sprintf("spec.patches.controlplane[%d]", i), p)
	}
	for i, p := range ps.Worker {
		v.patch(fmt.Sprintf("spec.patches.worker[%d]", i), p)
	}
}

func (v *validator) patch(path string, p Patch) {
	b, err := PatchBytes(v.src.Dir, p)
	if err != nil {
		v.errf(path, "%v", err)
		return
	}
	// A trap of Talos clusters: a link selected by its kernel name.
	var val any
	if yaml.Unmarshal(b, &val) == nil && usesInterfaceName(val) {
		v.warnf(path, "selects a network interface by name (machine.network.interfaces[].interface): kernel names differ between machines and Talos versions (eth0, ens18, enp1s0); select it by MAC (node interface.mac / deviceSelector.hardwareAddr)")
	}
}

// usesInterfaceName finds machine.network.interfaces[].interface in a
// strategic-merge patch.
func usesInterfaceName(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	mach, _ := m["machine"].(map[string]any)
	nw, _ := mach["network"].(map[string]any)
	ifs, _ := nw["interfaces"].([]any)
	for _, i := range ifs {
		if im, ok := i.(map[string]any); ok {
			if name, ok := im["interface"].(string); ok && name != "" {
				return true
			}
		}
	}
	return false
}

// PatchBytes returns a patch as YAML bytes (what Talos' configpatcher
// loads), reading "@file" patches relative to the cluster directory.
func PatchBytes(dir string, p Patch) ([]byte, error) {
	switch val := p.Value.(type) {
	case string:
		name, ok := strings.CutPrefix(val, "@")
		if !ok || name == "" {
			return nil, fmt.Errorf("a string patch must name a file as \"@path\", got %q", val)
		}
		b, err := os.ReadFile(At(dir).Resolve(name))
		if err != nil {
			return nil, fmt.Errorf("reading patch file: %w", err)
		}
		return b, nil
	case map[string]any, []any:
		return marshalYAML(val)
	default:
		return nil, fmt.Errorf("a patch must be a mapping, a list or \"@file\"")
	}
}

func (v *validator) platform() {
	pl := &v.src.Cluster.Spec.Platform
	ok := false
	for _, b := range Bundles {
		ok = ok || b == pl.Bundle
	}
	if !ok {
		v.errf("spec.platform.bundle", "must be one of %s, got %q", strings.Join(Bundles, ", "), pl.Bundle)
	}
	if f := pl.Flux; f != nil && f.Version != "" && !versionRe.MatchString(f.Version) {
		v.errf("spec.platform.flux.version", "%q is not a Flux release like v2.7.3", f.Version)
	}
	for i, e := range pl.Extra {
		p := fmt.Sprintf("spec.platform.extra[%d]", i)
		if !dnsLabelRe.MatchString(e.Name) {
			v.errf(p+".name", "%q is not a valid name", e.Name)
		}
		switch {
		case !dnsLabelRe.MatchString(e.Namespace):
			v.errf(p+".namespace", "%q is not a valid namespace", e.Namespace)
		case reservedNamespaces[e.Namespace]:
			v.errf(p+".namespace", "%q belongs to Kubernetes or Flux: dodai labels a component's namespace for Pod Security and owns its lifetime; use a namespace of its own", e.Namespace)
		}
		if u, err := url.Parse(e.Repo); err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci") {
			v.errf(p+".repo", "%q is not an http(s):// or oci:// URL", e.Repo)
		}
		if e.Chart == "" {
			v.errf(p+".chart", "is required")
		}
		if e.Version == "" {
			v.errf(p+".version", "is required (pin the chart version)")
		}
	}
}

// ParseMAC parses a MAC address and returns it in canonical lowercase
// colon form (macaddr's, the one normaliser every package uses).
func ParseMAC(s string) (string, error) { return macaddr.Canonical(s) }

// ParseSizeMatcher parses a disk size expression such as "500GB", ">= 1TB"
// or "<=2TiB" into an operator and a size in bytes.
func ParseSizeMatcher(s string) (op string, bytes uint64, err error) {
	m := diskSizeRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", 0, fmt.Errorf("%q is not a size like \"500GB\" or \">= 1TB\"", s)
	}
	op = m[1]
	if op == "" {
		op = "=="
	}
	f, _ := strconv.ParseFloat(m[2], 64)
	mult := map[string]float64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15,
		"KiB": 1 << 10, "kiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}
	mu, ok := mult[m[4]]
	if !ok {
		return "", 0, fmt.Errorf("%q has an unknown unit %q", s, m[4])
	}
	return op, uint64(f * mu), nil
}
