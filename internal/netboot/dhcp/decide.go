// Package dhcp holds dodai netboot's DHCPv4 logic: pure decision functions
// that turn a request into a reply (or nothing) in proxy or dhcp mode, the
// lease allocator of dhcp mode, and the socket servers (port 67 and the PXE
// boot server port 4011) that feed them. Packets are parsed and built with
// github.com/insomniacslk/dhcp.
package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
)

// Modes.
const (
	ModeProxy = "proxy"
	ModeDHCP  = "dhcp"
)

// Boot file names inside the iPXE directory (and TFTP root).
const (
	FileUndionly   = "undionly.kpxe"
	FileSNPOnly    = "snponly.efi"
	FileIPXEEFI    = "ipxe.efi"
	FileARM64SNP   = "arm64/snp.efi"
	optPXEClient   = "PXEClient"
	optHTTPClient  = "HTTPClient"
	optIPXEEncap   = dhcpv4.GenericOptionCode(175)
	ipxeNoPXEDHCP  = 176
	optUserClass   = dhcpv4.OptionUserClassInformation
	optVendorClass = dhcpv4.OptionClassIdentifier
)

// Config is what the decision functions need to know.
type Config struct {
	// Mode is ModeProxy or ModeDHCP.
	Mode string
	// ServerIP is this server's address on the boot network (siaddr,
	// option 54, TFTP and HTTP host).
	ServerIP netip.Addr
	// HTTPURL is the base URL of the HTTP server, e.g. http://10.0.0.1:8080.
	HTTPURL string
	// EFIBinary is the x86-64 UEFI boot file: snponly.efi (default) or ipxe.efi.
	EFIBinary string
	// Known reports whether a MAC is listed in the cluster file (nil: none).
	Known func(mac macaddr.MAC) bool
	// OnlyKnown ignores every MAC not Known.
	OnlyKnown bool
	// NoARM64 is set when there is no arm64 iPXE binary: arm64 clients are
	// then ignored instead of being sent to a missing file.
	NoARM64 bool

	// dhcp mode only:

	// Leases allocates addresses.
	Leases LeaseStore
	// Subnet of the boot network (netmask).
	Subnet netip.Prefix
	// Router and DNS handed out (optional).
	Router netip.Addr
	DNS    []netip.Addr
	// LeaseTime of bound leases.
	LeaseTime time.Duration
}

// Client is what a request says about the machine.
type Client struct {
	// MAC is the client hardware address (chaddr); zero when the request is
	// not from an Ethernet client (hlen other than 6).
	MAC macaddr.MAC
	// Arch is option 93 (first value); HasArch false when absent.
	Arch    iana.Arch
	HasArch bool
	// Class is "PXEClient", "HTTPClient" or "" (option 60 prefix).
	Class string
	// IPXE is true when user class says iPXE or option 175 is present.
	IPXE bool
}

// Classify reads the boot-relevant fields of a request.
func Classify(m *dhcpv4.DHCPv4) Client {
	var c Client
	if m.HWType == iana.HWTypeEthernet {
		c.MAC, _ = macaddr.FromBytes(m.ClientHWAddr)
	}
	if a := m.ClientArch(); len(a) > 0 {
		c.Arch, c.HasArch = a[0], true
	}
	vc := m.ClassIdentifier()
	switch {
	case strings.HasPrefix(vc, optPXEClient):
		c.Class = optPXEClient
	case strings.HasPrefix(vc, optHTTPClient):
		c.Class = optHTTPClient
	}
	// iPXE sends the raw string "iPXE" (not RFC 3004), so match bytes.
	c.IPXE = bytes.Contains(m.GetOneOption(optUserClass), []byte("iPXE")) || m.Options.Has(optIPXEEncap)
	return c
}

// BootClient reports whether the request comes from network boot firmware.
func (c Client) BootClient() bool { return c.Class != "" || c.IPXE }

// ArchName maps a client to the asset architecture: amd64 or arm64 ("" if
// unsupported).
func (c Client) ArchName() string {
	if !c.HasArch {
		return "amd64"
	}
	switch c.Arch {
	case iana.INTEL_X86PC, iana.EFI_IA32, iana.EFI_X86_64, iana.EFI_BC,
		iana.EFI_X86_HTTP, iana.EFI_X86_64_HTTP, iana.INTEL_X86PC_HTTP:
		return "amd64"
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP, iana.UBOOT_ARM64, iana.UBOOT_ARM64_HTTP:
		return "arm64"
	}
	return ""
}

// Boot is the boot instruction for a client.
type Boot struct {
	// File goes into option 67 and the BOOTP file field: a TFTP path or a URL.
	File string
	// HTTP is true for UEFI HTTP boot (option 60 HTTPClient in the reply).
	HTTP bool
	// Stage this reply moves the machine to.
	Stage registry.Stage
}

// ErrUnsupportedArch is returned for client architectures dodai has no
// boot file for.
var ErrUnsupportedArch = errors.New("unsupported client architecture")

// BootFor decides the boot file for a client.
func (cfg *Config) BootFor(c Client) (Boot, error) {
	if c.IPXE {
		// Already iPXE: hand it the per-machine script. This breaks the
		// chainload loop. The MAC and arch are in the URL so no further
		// round trip is needed.
		arch := c.ArchName()
		if arch == "" {
			arch = "amd64"
		}
		return Boot{File: fmt.Sprintf("%s/boot.ipxe?mac=%s&arch=%s", cfg.HTTPURL, c.MAC, arch), Stage: registry.StageIPXE}, nil
	}
	if cfg.NoARM64 && c.ArchName() == "arm64" {
		return Boot{}, fmt.Errorf("%w %d: no arm64 iPXE binary (%s) in the iPXE directory", ErrUnsupportedArch, uint16(c.Arch), FileARM64SNP)
	}
	efi := cfg.EFIBinary
	if efi == "" {
		efi = FileSNPOnly
	}
	if !c.HasArch {
		return Boot{File: FileUndionly, Stage: registry.StageDHCP}, nil
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		return Boot{File: FileUndionly, Stage: registry.StageDHCP}, nil
	case iana.EFI_IA32, iana.EFI_X86_64, iana.EFI_BC:
		return Boot{File: efi, Stage: registry.StageDHCP}, nil
	case iana.EFI_ARM64, iana.UBOOT_ARM64:
		return Boot{File: FileARM64SNP, Stage: registry.StageDHCP}, nil
	case iana.EFI_X86_HTTP, iana.EFI_X86_64_HTTP:
		return Boot{File: cfg.HTTPURL + "/ipxe/" + efi, HTTP: true, Stage: registry.StageDHCP}, nil
	case iana.EFI_ARM64_HTTP, iana.UBOOT_ARM64_HTTP:
		return Boot{File: cfg.HTTPURL + "/ipxe/" + FileARM64SNP, HTTP: true, Stage: registry.StageDHCP}, nil
	}
	return Boot{}, fmt.Errorf("%w %d (%s)", ErrUnsupportedArch, uint16(c.Arch), c.Arch)
}

// Event describes what a decision did, for the registry, logs and metrics.
type Event struct {
	Client Client
	// Type is the request's message type.
	Type dhcpv4.MessageType
	// Reply is the reply's message type (0 when ignored).
	Reply dhcpv4.MessageType
	// IP is the client's address if known (lease, requested or ciaddr).
	IP netip.Addr
	// Boot is the boot instruction given (zero when none).
	Boot Boot
	// Ignored says why no reply was sent ("" when one was).
	Ignored string
	// Port the request arrived on.
	Port Port
	// Durable, when not nil, must be done without error before the reply
	// leaves (an ACK whose lease is not persisted yet).
	Durable *Durable
}

// Port says where a request arrived: the DHCP port 67 or the PXE boot
// server port 4011.
type Port int

// Ports.
const (
	PortDHCP Port = 67
	PortPXE  Port = 4011
)

// Handle is the decision function: request in, reply (or nil) out. It never
// touches sockets; in dhcp mode it allocates through cfg.Leases.
func (cfg *Config) Handle(req *dhcpv4.DHCPv4, port Port) (*dhcpv4.DHCPv4, Event) {
	ev := Event{Client: Classify(req), Type: req.MessageType(), Port: port}
	ignore := func(why string) (*dhcpv4.DHCPv4, Event) {
		ev.Ignored = why
		return nil, ev
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return ignore("not a BOOTREQUEST")
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return ignore("not an Ethernet client")
	}
	if ev.Client.MAC.IsZero() {
		// No client has it; the allocator keeps it for declined addresses.
		return ignore("zero client hardware address")
	}
	if cfg.OnlyKnown && (cfg.Known == nil || !cfg.Known(ev.Client.MAC)) {
		return ignore("unknown MAC (--only-known)")
	}
	if ip, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ip.IsUnspecified() {
		ev.IP = ip
	} else if ip, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4()); ok && !ip.IsUnspecified() {
		ev.IP = ip
	}
	if port == PortPXE {
		return cfg.handlePXE(req, ev)
	}
	if cfg.Mode == ModeDHCP {
		return cfg.handleDHCP(req, ev)
	}
	return cfg.handleProxy(req, ev)
}

// handleProxy answers boot clients' DISCOVER and REQUEST without an
// address: the site's DHCP server leases the address, we add boot info.
func (cfg *Config) handleProxy(req *dhcpv4.DHCPv4, ev Event) (*dhcpv4.DHCPv4, Event) {
	var rt dhcpv4.MessageType
	switch ev.Type {
	case dhcpv4.MessageTypeDiscover:
		rt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		rt = dhcpv4.MessageTypeAck
	default:
		ev.Ignored = "proxy mode answers only DISCOVER and REQUEST"
		return nil, ev
	}
	if ev.Client.Class == "" {
		ev.Ignored = "not a PXE/HTTP boot client (option 60)"
		return nil, ev
	}
	boot, err := cfg.BootFor(ev.Client)
	if err != nil {
		ev.Ignored = err.Error()
		return nil, ev
	}
	reply, err := cfg.reply(req, rt, boot, ev.Client)
	if err != nil {
		ev.Ignored = err.Error()
		return nil, ev
	}
	skipDiscovery(reply, boot, ev.Client)
	ev.Reply, ev.Boot = rt, boot
	return reply, ev
}

// skipDiscovery adds PXE discovery control to an offer of a TFTP boot file
// to a PXE client: skip boot server discovery and load this offer's boot
// file (option 43, sub-option 6 = 8: bytes 06 01 08 ff). Without it UEFI
// firmware (EDK2) takes an offer with option 60 "PXEClient" as a PXE
// 1.0 offer that asks for discovery: it sends a REQUEST to port 4011 and
// waits about a second for boot servers before it loads the file.
func skipDiscovery(reply *dhcpv4.DHCPv4, boot Boot, c Client) {
	if boot.File != "" && !boot.HTTP && c.Class == optPXEClient {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
}

// handlePXE answers requests on the PXE boot server port 4011 (UEFI
// firmware and iPXE send their ProxyDHCP REQUEST there): a DHCPACK with the
// boot file, unicast back to the client.
func (cfg *Config) handlePXE(req *dhcpv4.DHCPv4, ev Event) (*dhcpv4.DHCPv4, Event) {
	if ev.Type != dhcpv4.MessageTypeRequest && ev.Type != dhcpv4.MessageTypeInform {
		ev.Ignored = "port 4011 answers only REQUEST/INFORM"
		return nil, ev
	}
	if !ev.Client.BootClient() {
		ev.Ignored = "not a PXE/HTTP boot client (option 60)"
		return nil, ev
	}
	boot, err := cfg.BootFor(ev.Client)
	if err != nil {
		ev.Ignored = err.Error()
		return nil, ev
	}
	reply, err := cfg.reply(req, dhcpv4.MessageTypeAck, boot, ev.Client)
	if err != nil {
		ev.Ignored = err.Error()
		return nil, ev
	}
	ev.Reply, ev.Boot = dhcpv4.MessageTypeAck, boot
	return reply, ev
}

// reply builds the common part of every answer: message type, server id,
// siaddr, boot file in option 67 and the BOOTP file field, option 60, the
// client GUID (97) echoed, and for iPXE 175.176 (no-pxedhcp).
func (cfg *Config) reply(req *dhcpv4.DHCPv4, rt dhcpv4.MessageType, boot Boot, c Client) (*dhcpv4.DHCPv4, error) {
	sip := net.IP(cfg.ServerIP.AsSlice())
	r := newReply(req,
		dhcpv4.WithMessageType(rt),
		dhcpv4.WithServerIP(sip),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sip)),
	)
	if boot.File != "" {
		r.BootFileName = boot.File
		r.UpdateOption(dhcpv4.OptBootFileName(boot.File))
		if !boot.HTTP {
			r.ServerHostName = cfg.ServerIP.String()
		}
	}
	switch {
	case boot.HTTP:
		r.UpdateOption(dhcpv4.OptClassIdentifier(optHTTPClient))
	case c.Class == optPXEClient:
		r.UpdateOption(dhcpv4.OptClassIdentifier(optPXEClient))
	}
	if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(guid) > 0 {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
	if c.IPXE {
		// Tell iPXE not to wait ~3 s for further ProxyDHCP offers.
		r.UpdateOption(dhcpv4.OptGeneric(optIPXEEncap, []byte{ipxeNoPXEDHCP, 1, 1}))
	}
	return r, nil
}

// newReply is dhcpv4.NewReplyFromRequest without its first step: that
// draws a random transaction ID from the kernel (a getrandom syscall and a
// context timer per packet) only for the reply to overwrite it with the
// request's. The same modifiers make the same reply.
func newReply(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options, 8),
	}
	for _, m := range [...]dhcpv4.Modifier{
		dhcpv4.WithReply(req),
		dhcpv4.WithGatewayIP(req.GatewayIPAddr),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation),
		// RFC 6842: a client identifier is copied back.
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier),
	} {
		m(r)
	}
	for _, m := range mods {
		m(r)
	}
	return r
}

// handleDHCP is the full server: addresses from the pool or reservations,
// with boot info for boot clients.
func (cfg *Config) handleDHCP(req *dhcpv4.DHCPv4, ev Event) (*dhcpv4.DHCPv4, Event) {
	if cfg.Leases == nil {
		ev.Ignored = "no lease pool"
		return nil, ev
	}
	mac := ev.Client.MAC
	reqIP, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	ciaddr, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	sid, _ := netip.AddrFromSlice(req.ServerIdentifier().To4())
	switch ev.Type {
	case dhcpv4.MessageTypeDiscover:
		ip, ok := cfg.Leases.Offer(mac, reqIP)
		if !ok {
			ev.Ignored = "address pool exhausted"
			return nil, ev
		}
		ev.IP = ip
		return cfg.addressReply(req, ev, dhcpv4.MessageTypeOffer, ip)
	case dhcpv4.MessageTypeRequest:
		if sid.IsValid() && !sid.IsUnspecified() && sid != cfg.ServerIP {
			ev.Ignored = "client chose another server"
			return nil, ev
		}
		ip := reqIP
		if !ip.IsValid() || ip.IsUnspecified() {
			ip = ciaddr // RENEWING/REBINDING
		}
		if !ip.IsValid() || ip.IsUnspecified() {
			ev.Ignored = "REQUEST without an address"
			return nil, ev
		}
		ev.IP = ip
		if !cfg.Subnet.Contains(ip) {
			// INIT-REBOOT from another network: we are authoritative here.
			return cfg.nak(req, ev, "address not on this network")
		}
		d, err := cfg.Leases.Bind(mac, ip, cfg.LeaseTime)
		if errors.Is(err, ErrPersist) {
			// Not the client's fault: no NAK, it retries.
			ev.Ignored = err.Error()
			return nil, ev
		}
		if err != nil {
			return cfg.nak(req, ev, err.Error())
		}
		ev.Durable = d
		return cfg.addressReply(req, ev, dhcpv4.MessageTypeAck, ip)
	case dhcpv4.MessageTypeDecline:
		if !sid.IsValid() || sid != cfg.ServerIP {
			ev.Ignored = "DECLINE for another server"
			return nil, ev
		}
		if err := cfg.Leases.Decline(mac, reqIP); err != nil {
			ev.Ignored = err.Error()
		} else {
			ev.Ignored = "DECLINE recorded"
		}
		return nil, ev
	case dhcpv4.MessageTypeRelease:
		if err := cfg.Leases.Release(mac, ciaddr); err != nil {
			ev.Ignored = err.Error()
		} else {
			ev.Ignored = "RELEASE recorded"
		}
		return nil, ev
	case dhcpv4.MessageTypeInform:
		r, ev := cfg.addressReply(req, ev, dhcpv4.MessageTypeAck, netip.IPv4Unspecified())
		if r != nil {
			r.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		}
		return r, ev
	}
	ev.Ignored = "unhandled message type"
	return nil, ev
}

// Unrecorded is the reply to send instead of an ACK whose lease was not
// recorded (ev.Durable failed with err): a NAK when another client got the
// address meanwhile (ErrAddressTaken: the client's notion of its address
// is wrong, RFC 2131 §4.3.2; it starts over with a DISCOVER), none when
// the store failed (not the client's fault: it retries the REQUEST).
func (cfg *Config) Unrecorded(req *dhcpv4.DHCPv4, ev Event, err error) (*dhcpv4.DHCPv4, Event) {
	ev.Durable = nil
	if errors.Is(err, ErrAddressTaken) && ev.Type == dhcpv4.MessageTypeRequest {
		return cfg.nak(req, ev, err.Error())
	}
	ev.Reply, ev.Boot, ev.Ignored = 0, Boot{}, err.Error()
	return nil, ev
}

func (cfg *Config) nak(req *dhcpv4.DHCPv4, ev Event, why string) (*dhcpv4.DHCPv4, Event) {
	sip := net.IP(cfg.ServerIP.AsSlice())
	r := newReply(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sip)),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	r.SetBroadcast()
	ev.Reply = dhcpv4.MessageTypeNak
	ev.Ignored = ""
	return r, ev
}

func (cfg *Config) addressReply(req *dhcpv4.DHCPv4, ev Event, rt dhcpv4.MessageType, ip netip.Addr) (*dhcpv4.DHCPv4, Event) {
	var boot Boot
	if ev.Client.BootClient() {
		b, err := cfg.BootFor(ev.Client)
		if err == nil {
			boot = b
		}
	}
	r, err := cfg.reply(req, rt, boot, ev.Client)
	if err != nil {
		ev.Ignored = err.Error()
		return nil, ev
	}
	skipDiscovery(r, boot, ev.Client)
	r.YourIPAddr = net.IP(ip.AsSlice())
	r.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(cfg.Subnet.Bits(), 32)))
	r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(cfg.LeaseTime))
	if cfg.Router.IsValid() {
		r.UpdateOption(dhcpv4.OptRouter(net.IP(cfg.Router.AsSlice())))
	}
	if len(cfg.DNS) > 0 {
		ips := make([]net.IP, len(cfg.DNS))
		for i, d := range cfg.DNS {
			ips[i] = net.IP(d.AsSlice())
		}
		r.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	ev.Reply, ev.Boot = rt, boot
	return r, ev
}
