package machineconfig

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// A node's network is written in the form its Talos version understands:
//
//   - up to Talos 1.11, in the v1alpha1 document: machine.network.hostname,
//     machine.network.interfaces[] (deviceSelector by MAC, addresses or
//     dhcp, routes, mtu, vip) and machine.network.nameservers;
//   - from Talos 1.12 (machinery's MultidocNetworkConfigSupported), as
//     separate documents: HostnameConfig, LinkAliasConfig (names the link
//     chosen by MAC with a CEL selector), LinkConfig (addresses, routes, mtu)
//     or DHCPv4Config, Layer2VIPConfig and ResolverConfig. Talos 1.12 still
//     reads the old fields, but machinery's generator already writes a
//     HostnameConfig document for it, which conflicts with
//     machine.network.hostname, and the old fields are deprecated.

// linkAlias is the name dodai gives the node's link (a LinkAliasConfig), so
// that the other documents need not know the kernel's interface name.
const linkAlias = "net0"

// legacyNetworkOptions are the v1alpha1 network options (Talos up to 1.11).
func (r *Renderer) legacyNetworkOptions(node *cluster.Node) []v1alpha1.NetworkConfigOption {
	var netOpts []v1alpha1.NetworkConfigOption
	if len(node.Nameservers) > 0 {
		netOpts = append(netOpts, v1alpha1.WithNetworkNameservers(node.Nameservers...))
	}
	iface := v1alpha1.IfaceBySelector(r.linkSelector(node))
	if node.Address != "" {
		netOpts = append(netOpts, v1alpha1.WithNetworkInterfaceCIDR(iface, node.Address))
	} else {
		netOpts = append(netOpts, v1alpha1.WithNetworkInterfaceDHCP(iface, true))
	}
	if node.Interface != nil && node.Interface.MTU != 0 {
		netOpts = append(netOpts, v1alpha1.WithNetworkInterfaceMTU(iface, node.Interface.MTU))
	}
	if r.spec.VIP != "" && node.Role == cluster.RoleControlPlane {
		netOpts = append(netOpts, v1alpha1.WithNetworkInterfaceVirtualIP(iface, r.spec.VIP))
	}
	return netOpts
}

// legacyNetworkSettings sets the hostname and the default route in the
// v1alpha1 document (Talos up to 1.11).
func (r *Renderer) legacyNetworkSettings(c *v1alpha1.Config, node *cluster.Node) {
	m := c.MachineConfig
	if m.MachineNetwork == nil {
		m.MachineNetwork = &v1alpha1.NetworkConfig{}
	}
	m.MachineNetwork.NetworkHostname = node.Name
	if node.Gateway == "" {
		return
	}
	sel := r.linkSelector(node)
	for _, dev := range m.MachineNetwork.NetworkInterfaces {
		if dev.DeviceSelector != nil && *dev.DeviceSelector == sel {
			dest := "0.0.0.0/0"
			if gw, err := netip.ParseAddr(node.Gateway); err == nil && gw.Is6() {
				dest = "::/0"
			}
			dev.DeviceRoutes = append(dev.DeviceRoutes, &v1alpha1.Route{RouteNetwork: dest, RouteGateway: node.Gateway})
		}
	}
}

// linkMatch is the CEL expression selecting the node's link: the same link
// the v1alpha1 deviceSelector picks (hardware address, optional driver).
func (r *Renderer) linkMatch(node *cluster.Node) (cel.Expression, error) {
	sel := r.linkSelector(node)
	if sel.NetworkDeviceHardwareAddress == "" {
		return cel.Expression{}, fmt.Errorf("node %s has no MAC address to select its link by", node.Name)
	}
	expr := "mac(link.hardware_addr) == " + strconv.Quote(sel.NetworkDeviceHardwareAddress)
	if sel.NetworkDeviceKernelDriver != "" {
		expr += " && glob(" + strconv.Quote(sel.NetworkDeviceKernelDriver) + ", link.driver)"
	}
	e, err := cel.ParseBooleanExpression(expr, celenv.LinkLocator())
	if err != nil {
		return cel.Expression{}, fmt.Errorf("link selector of node %s: %w", node.Name, err)
	}
	return e, nil
}

// networkDocuments are the node's network documents (Talos 1.12+).
func (r *Renderer) networkDocuments(node *cluster.Node) ([]talosconfig.Document, error) {
	hostname := network.NewHostnameConfigV1Alpha1()
	hostname.ConfigHostname = node.Name
	docs := []talosconfig.Document{hostname}

	match, err := r.linkMatch(node)
	if err != nil {
		return nil, err
	}
	alias := network.NewLinkAliasConfigV1Alpha1(linkAlias)
	alias.Selector.Match = match
	docs = append(docs, alias)

	link := network.NewLinkConfigV1Alpha1(linkAlias)
	if node.Interface != nil && node.Interface.MTU > 0 {
		link.LinkMTU = uint32(node.Interface.MTU)
	}
	if node.Address != "" {
		p, err := netip.ParsePrefix(node.Address)
		if err != nil {
			return nil, fmt.Errorf("node %s address %q: %w", node.Name, node.Address, err)
		}
		link.LinkAddresses = []network.AddressConfig{{AddressAddress: p}}
		if node.Gateway != "" {
			gw, err := netip.ParseAddr(node.Gateway)
			if err != nil {
				return nil, fmt.Errorf("node %s gateway %q: %w", node.Name, node.Gateway, err)
			}
			// No destination: Talos makes it the default route of the
			// gateway's address family.
			link.LinkRoutes = []network.RouteConfig{{RouteGateway: network.Addr{Addr: gw}}}
		}
		docs = append(docs, link)
	} else {
		if link.LinkMTU != 0 {
			docs = append(docs, link)
		}
		docs = append(docs, network.NewDHCPv4ConfigV1Alpha1(linkAlias))
	}
	if r.spec.VIP != "" && node.Role == cluster.RoleControlPlane {
		vip := network.NewLayer2VIPConfigV1Alpha1(r.spec.VIP)
		vip.LinkName = linkAlias
		docs = append(docs, vip)
	}
	if len(node.Nameservers) > 0 {
		res := network.NewResolverConfigV1Alpha1()
		for _, ns := range node.Nameservers {
			a, err := netip.ParseAddr(ns)
			if err != nil {
				return nil, fmt.Errorf("node %s nameserver %q: %w", node.Name, ns, err)
			}
			res.ResolverNameservers = append(res.ResolverNameservers, network.NameserverConfig{Address: network.Addr{Addr: a}})
		}
		docs = append(docs, res)
	}
	return docs, nil
}

// withNetworkDocuments returns cfg with the node's network documents added,
// replacing the HostnameConfig machinery's generator wrote (auto: stable).
func withNetworkDocuments(cfg config.Provider, extra []talosconfig.Document) (config.Provider, error) {
	var docs []talosconfig.Document
	for _, d := range cfg.Documents() {
		if d.Kind() == network.HostnameKind {
			continue
		}
		docs = append(docs, d)
	}
	out, err := container.New(append(docs, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("assembling network documents: %w", err)
	}
	return out, nil
}
