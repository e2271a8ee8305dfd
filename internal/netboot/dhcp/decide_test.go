package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

var (
	serverIP = netip.MustParseAddr("10.99.0.1")
	testMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
)

// request builds a client packet like the firmware in the reference's
// captures (§2).
type reqOpt func(*dhcpv4.DHCPv4)

func vendor(s string) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptClassIdentifier(s)) }
}
func arch(a iana.Arch) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptClientArch(a)) }
}
func userClass(s string) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptGeneric(optUserClass, []byte(s))) }
}
func opt175() reqOpt {
	return func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptGeneric(optIPXEEncap, []byte{19, 1, 1, 235, 4, 1, 0, 0, 0}))
	}
}
func guid() reqOpt {
	return func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)))
	}
}
func reqIP(ip string) reqOpt {
	return func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
}
func serverID(ip string) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip))) }
}
func ciaddr(ip string) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.ClientIPAddr = net.ParseIP(ip) }
}
func hw(mac net.HardwareAddr) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.ClientHWAddr = mac }
}

func request(t testing.TB, mt dhcpv4.MessageType, opts ...reqOpt) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(testMAC), dhcpv4.WithMessageType(mt))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

func proxyConfig() *Config {
	return &Config{Mode: ModeProxy, ServerIP: serverIP, HTTPURL: "http://10.99.0.1:8080"}
}

var (
	ovmf      = []reqOpt{vendor("PXEClient:Arch:00007:UNDI:003000"), arch(iana.EFI_X86_64), guid()}
	biosROM   = []reqOpt{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC), userClass("iPXE"), opt175()}
	biosPXE   = []reqOpt{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)}
	chainEFI  = []reqOpt{vendor("PXEClient:Arch:00007:UNDI:003010"), arch(iana.EFI_X86_64), userClass("iPXE"), opt175()}
	arm64UEFI = []reqOpt{vendor("PXEClient:Arch:00011:UNDI:003000"), arch(iana.EFI_ARM64)}
	httpX64   = []reqOpt{vendor("HTTPClient:Arch:00016:UNDI:003000"), arch(iana.EFI_X86_64_HTTP)}
	httpARM   = []reqOpt{vendor("HTTPClient:Arch:00019:UNDI:003000"), arch(iana.EFI_ARM64_HTTP)}
	udhcpc    = []reqOpt{vendor("udhcp 1.35.0")}
)

func TestProxyDecisions(t *testing.T) {
	script := "http://10.99.0.1:8080/boot.ipxe?mac=52:54:00:12:34:56&arch="
	tests := []struct {
		name      string
		mt        dhcpv4.MessageType
		opts      []reqOpt
		efi       string
		wantType  dhcpv4.MessageType // 0: no reply
		wantFile  string
		want43    bool
		wantClass string
	}{
		{"BIOS PXE discover", dhcpv4.MessageTypeDiscover, biosPXE, "", dhcpv4.MessageTypeOffer, "undionly.kpxe", true, "PXEClient"},
		{"BIOS ROM iPXE gets script", dhcpv4.MessageTypeDiscover, biosROM, "", dhcpv4.MessageTypeOffer, script + "amd64", true, "PXEClient"},
		{"OVMF discover", dhcpv4.MessageTypeDiscover, ovmf, "", dhcpv4.MessageTypeOffer, "snponly.efi", true, "PXEClient"},
		{"OVMF request", dhcpv4.MessageTypeRequest, append(ovmf, reqIP("10.99.0.150"), serverID("10.99.0.2")), "", dhcpv4.MessageTypeAck, "snponly.efi", true, "PXEClient"},
		{"OVMF with ipxe.efi", dhcpv4.MessageTypeDiscover, ovmf, "ipxe.efi", dhcpv4.MessageTypeOffer, "ipxe.efi", true, "PXEClient"},
		{"EFI BC 9 is x86-64", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("PXEClient"), arch(iana.EFI_BC)}, "", dhcpv4.MessageTypeOffer, "snponly.efi", true, "PXEClient"},
		{"IA32 6", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("PXEClient"), arch(iana.EFI_IA32)}, "", dhcpv4.MessageTypeOffer, "snponly.efi", true, "PXEClient"},
		{"chained ipxe.efi", dhcpv4.MessageTypeDiscover, chainEFI, "", dhcpv4.MessageTypeOffer, script + "amd64", true, "PXEClient"},
		{"iPXE by 175 only", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("PXEClient"), arch(iana.EFI_X86_64), opt175()}, "", dhcpv4.MessageTypeOffer, script + "amd64", true, "PXEClient"},
		{"arm64 UEFI", dhcpv4.MessageTypeDiscover, arm64UEFI, "", dhcpv4.MessageTypeOffer, "arm64/snp.efi", true, "PXEClient"},
		{"x64 HTTP boot", dhcpv4.MessageTypeDiscover, httpX64, "", dhcpv4.MessageTypeOffer, "http://10.99.0.1:8080/ipxe/snponly.efi", false, "HTTPClient"},
		{"arm64 HTTP boot", dhcpv4.MessageTypeDiscover, httpARM, "", dhcpv4.MessageTypeOffer, "http://10.99.0.1:8080/ipxe/arm64/snp.efi", false, "HTTPClient"},
		{"x86 HTTP boot 15", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("HTTPClient:Arch:00015"), arch(iana.EFI_X86_HTTP)}, "", dhcpv4.MessageTypeOffer, "http://10.99.0.1:8080/ipxe/snponly.efi", false, "HTTPClient"},
		{"plain client ignored", dhcpv4.MessageTypeDiscover, udhcpc, "", 0, "", false, ""},
		{"no option 60 ignored", dhcpv4.MessageTypeDiscover, nil, "", 0, "", false, ""},
		{"iPXE without 60 ignored on 67", dhcpv4.MessageTypeDiscover, []reqOpt{userClass("iPXE")}, "", 0, "", false, ""},
		{"release ignored", dhcpv4.MessageTypeRelease, biosPXE, "", 0, "", false, ""},
		{"unsupported arch (RISC-V)", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("PXEClient"), arch(iana.EFI_RISCV64)}, "", 0, "", false, ""},
		{"missing arch means BIOS", dhcpv4.MessageTypeDiscover, []reqOpt{vendor("PXEClient")}, "", dhcpv4.MessageTypeOffer, "undionly.kpxe", true, "PXEClient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxyConfig()
			cfg.EFIBinary = tt.efi
			req := request(t, tt.mt, tt.opts...)
			r, ev := cfg.Handle(req, PortDHCP)
			if tt.wantType == 0 {
				if r != nil {
					t.Fatalf("want no reply, got %s", r.Summary())
				}
				if ev.Ignored == "" {
					t.Fatal("ignored request has no reason")
				}
				return
			}
			if r == nil {
				t.Fatalf("no reply: %s", ev.Ignored)
			}
			// Round trip through the wire format, as a client sees it.
			r, err := dhcpv4.FromBytes(r.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if r.MessageType() != tt.wantType {
				t.Errorf("type %s, want %s", r.MessageType(), tt.wantType)
			}
			if !r.YourIPAddr.IsUnspecified() {
				t.Errorf("proxy handed out an address: %s", r.YourIPAddr)
			}
			if r.BootFileName != tt.wantFile || r.BootFileNameOption() != tt.wantFile {
				t.Errorf("file %q / option 67 %q, want %q", r.BootFileName, r.BootFileNameOption(), tt.wantFile)
			}
			if got := r.GetOneOption(dhcpv4.OptionVendorSpecificInformation); tt.want43 != bytes.Equal(got, []byte{6, 1, 8, 255}) {
				t.Errorf("option 43 = % x, want {6:8}: %v", got, tt.want43)
			}
			if r.ClassIdentifier() != tt.wantClass {
				t.Errorf("option 60 %q, want %q", r.ClassIdentifier(), tt.wantClass)
			}
			if !r.ServerIPAddr.Equal(net.IP(serverIP.AsSlice())) || !r.ServerIdentifier().Equal(net.IP(serverIP.AsSlice())) {
				t.Errorf("siaddr %s, option 54 %s", r.ServerIPAddr, r.ServerIdentifier())
			}
			if r.TransactionID != req.TransactionID || !bytes.Equal(r.ClientHWAddr, req.ClientHWAddr) {
				t.Error("xid/chaddr not echoed")
			}
			if g := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); g != nil && !bytes.Equal(r.GetOneOption(dhcpv4.OptionClientMachineIdentifier), g) {
				t.Error("option 97 not echoed")
			}
			isIPXE := Classify(req).IPXE
			if got := r.GetOneOption(optIPXEEncap); isIPXE != bytes.Equal(got, []byte{176, 1, 1}) {
				t.Errorf("175.176 = % x for iPXE=%v", got, isIPXE)
			}
			if ev.Boot.File != tt.wantFile || ev.Reply != tt.wantType {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func TestNoARM64(t *testing.T) {
	cfg := proxyConfig()
	cfg.NoARM64 = true
	for _, opts := range [][]reqOpt{arm64UEFI, httpARM} {
		if r, ev := cfg.Handle(request(t, dhcpv4.MessageTypeDiscover, opts...), PortDHCP); r != nil || !strings.Contains(ev.Ignored, "arm64") {
			t.Fatalf("arm64 without binary: %v %q", r, ev.Ignored)
		}
	}
	if r, _ := cfg.Handle(request(t, dhcpv4.MessageTypeDiscover, ovmf...), PortDHCP); r == nil {
		t.Fatal("x86 client refused")
	}
}

func TestPXEPort4011(t *testing.T) {
	cfg := proxyConfig()
	req := request(t, dhcpv4.MessageTypeRequest, append(ovmf, ciaddr("10.99.0.150"))...)
	r, ev := cfg.Handle(req, PortPXE)
	if r == nil {
		t.Fatalf("no 4011 reply: %s", ev.Ignored)
	}
	if r.MessageType() != dhcpv4.MessageTypeAck || r.BootFileName != "snponly.efi" || !r.YourIPAddr.IsUnspecified() {
		t.Fatalf("4011 reply %s", r.Summary())
	}
	if ev.IP != netip.MustParseAddr("10.99.0.150") {
		t.Errorf("event IP %s", ev.IP)
	}
	peer := netip.MustParseAddrPort("10.99.0.150:68")
	if d := Destination(req, r, peer, PortPXE); d.String() != "10.99.0.150:68" {
		t.Errorf("4011 reply goes to %s", d)
	}
	// DISCOVER on 4011 is not a thing.
	if r, _ := cfg.Handle(request(t, dhcpv4.MessageTypeDiscover, ovmf...), PortPXE); r != nil {
		t.Error("answered DISCOVER on 4011")
	}
	// A non-boot client on 4011 is ignored.
	if r, _ := cfg.Handle(request(t, dhcpv4.MessageTypeRequest, udhcpc...), PortPXE); r != nil {
		t.Error("answered plain client on 4011")
	}
}

func TestDestination(t *testing.T) {
	cfg := proxyConfig()
	req := request(t, dhcpv4.MessageTypeDiscover, biosPXE...)
	r, _ := cfg.Handle(req, PortDHCP)
	if d := Destination(req, r, netip.MustParseAddrPort("0.0.0.0:68"), PortDHCP); d.String() != "255.255.255.255:68" {
		t.Errorf("broadcast: %s", d)
	}
	req.GatewayIPAddr = net.ParseIP("10.1.0.1")
	if d := Destination(req, r, netip.AddrPort{}, PortDHCP); d.String() != "10.1.0.1:67" {
		t.Errorf("relay: %s", d)
	}
	req.GatewayIPAddr = net.IPv4zero
	req.ClientIPAddr = net.ParseIP("10.99.0.7")
	if d := Destination(req, r, netip.AddrPort{}, PortDHCP); d.String() != "10.99.0.7:68" {
		t.Errorf("ciaddr: %s", d)
	}
}

func TestOnlyKnown(t *testing.T) {
	cfg := proxyConfig()
	cfg.OnlyKnown = true
	known := macaddr.MustParse("52:54:00:12:34:56")
	cfg.Known = func(mac macaddr.MAC) bool { return mac == known }
	if r, ev := cfg.Handle(request(t, dhcpv4.MessageTypeDiscover, biosPXE...), PortDHCP); r == nil {
		t.Fatalf("known MAC ignored: %s", ev.Ignored)
	}
	other := request(t, dhcpv4.MessageTypeDiscover, append(biosPXE, hw(net.HardwareAddr{2, 0, 0, 0, 0, 1}))...)
	if r, ev := cfg.Handle(other, PortDHCP); r != nil || !strings.Contains(ev.Ignored, "only-known") {
		t.Fatalf("unknown MAC answered: %v %q", r, ev.Ignored)
	}
}

// TestZeroMACIgnored: an all-zero chaddr names no client. In dhcp mode its
// REQUEST would bind a lease to the zero MAC, which the allocator keeps for
// declined addresses: the address would leave the pool for a lease time.
func TestZeroMACIgnored(t *testing.T) {
	zero := hw(net.HardwareAddr{0, 0, 0, 0, 0, 0})
	if r, ev := proxyConfig().Handle(request(t, dhcpv4.MessageTypeDiscover, append(biosPXE, zero)...), PortDHCP); r != nil || !strings.Contains(ev.Ignored, "zero") {
		t.Fatalf("proxy mode answered a zero MAC: %v %q", r, ev.Ignored)
	}
	cfg := dhcpConfig(t, "", nil, nil)
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
		req := request(t, mt, zero, reqIP("10.99.0.100"), serverID(serverIP.String()))
		if r, ev := cfg.Handle(req, PortDHCP); r != nil || !strings.Contains(ev.Ignored, "zero") {
			t.Fatalf("%s from a zero MAC answered: %v %q", mt, r, ev.Ignored)
		}
	}
	if ip, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 1}, reqIP("10.99.0.100")); ip.String() != "10.99.0.100" {
		t.Fatalf("the address a zero MAC asked for is not free: got %s", ip)
	}
}

func dhcpConfig(t *testing.T, path string, res map[macaddr.MAC]netip.Addr, now func() time.Time) *Config {
	t.Helper()
	l, err := NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.102"), Reservations: res, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &Config{
		Mode: ModeDHCP, ServerIP: serverIP, HTTPURL: "http://10.99.0.1:8080", Leases: l,
		Subnet: netip.MustParsePrefix("10.99.0.0/24"), Router: serverIP,
		DNS: []netip.Addr{netip.MustParseAddr("10.99.0.53")}, LeaseTime: time.Hour,
	}
}

// handshake runs DISCOVER → OFFER → REQUEST → ACK for mac and returns the address.
func handshake(t *testing.T, cfg *Config, mac net.HardwareAddr, opts ...reqOpt) (netip.Addr, *dhcpv4.DHCPv4) {
	t.Helper()
	d := request(t, dhcpv4.MessageTypeDiscover, append(opts, hw(mac))...)
	off, ev := cfg.Handle(d, PortDHCP)
	if off == nil {
		return netip.Addr{}, nil
	}
	if off.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("offer: %s (%s)", off.MessageType(), ev.Ignored)
	}
	r := request(t, dhcpv4.MessageTypeRequest, append(opts, hw(mac), reqIP(off.YourIPAddr.String()), serverID(serverIP.String()))...)
	ack, ev := cfg.Handle(r, PortDHCP)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request for %s: %v %s", off.YourIPAddr, ack, ev.Ignored)
	}
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	return ip, ack
}

func TestDHCPModeHandshake(t *testing.T) {
	cfg := dhcpConfig(t, "", nil, nil)
	ip, ack := handshake(t, cfg, testMAC, udhcpc...)
	if ip != netip.MustParseAddr("10.99.0.100") {
		t.Fatalf("first address %s", ip)
	}
	if ack.SubnetMask().String() != "ffffff00" || !ack.Router()[0].Equal(net.ParseIP("10.99.0.1")) || !ack.DNS()[0].Equal(net.ParseIP("10.99.0.53")) {
		t.Errorf("options: %s", ack.Summary())
	}
	if ack.IPAddressLeaseTime(0) != time.Hour {
		t.Errorf("lease time %s", ack.IPAddressLeaseTime(0))
	}
	if ack.BootFileName != "" {
		t.Errorf("plain client got a boot file %q", ack.BootFileName)
	}
	// A PXE client gets an address and a boot file; iPXE the script + 175.176.
	ip2, ack2 := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 2}, ovmf...)
	if ip2 == ip || ack2.BootFileName != "snponly.efi" {
		t.Errorf("PXE client: %s %q", ip2, ack2.BootFileName)
	}
	ip3, ack3 := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 2}, chainEFI...)
	if ip3 != ip2 || !strings.HasPrefix(ack3.BootFileName, "http://10.99.0.1:8080/boot.ipxe?mac=02:00:00:00:00:02") {
		t.Errorf("iPXE re-DHCP: %s %q", ip3, ack3.BootFileName)
	}
	// Requesting someone else's address: NAK.
	r := request(t, dhcpv4.MessageTypeRequest, hw(net.HardwareAddr{2, 0, 0, 0, 0, 3}), reqIP(ip.String()))
	nak, _ := cfg.Handle(r, PortDHCP)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("stolen address: %v", nak)
	}
	// A REQUEST for another server's offer is silently ignored.
	r = request(t, dhcpv4.MessageTypeRequest, hw(net.HardwareAddr{2, 0, 0, 0, 0, 3}), reqIP("10.99.0.101"), serverID("10.99.0.2"))
	if x, _ := cfg.Handle(r, PortDHCP); x != nil {
		t.Fatalf("answered a REQUEST meant for another server: %s", x.Summary())
	}
	// Off-network INIT-REBOOT: NAK.
	r = request(t, dhcpv4.MessageTypeRequest, hw(net.HardwareAddr{2, 0, 0, 0, 0, 3}), reqIP("192.168.1.5"))
	if x, _ := cfg.Handle(r, PortDHCP); x == nil || x.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatal("off-network request not NAKed")
	}
	// Pool (3 addresses) exhausted after a third client.
	if ip4, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 4}); !ip4.IsValid() {
		t.Fatal("third address not given")
	}
	if ip5, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 5}); ip5.IsValid() {
		t.Fatalf("pool of 3 gave a 4th address %s", ip5)
	}
	// RELEASE frees the address for others.
	rel := request(t, dhcpv4.MessageTypeRelease, hw(testMAC), ciaddr(ip.String()))
	if x, ev := cfg.Handle(rel, PortDHCP); x != nil || ev.Ignored != "RELEASE recorded" {
		t.Fatalf("release: %v %q", x, ev.Ignored)
	}
	if ip5, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 0, 5}); ip5 != ip {
		t.Fatalf("released address not reused: %s", ip5)
	}
}

func TestDHCPModeReservationAndDecline(t *testing.T) {
	res := map[macaddr.MAC]netip.Addr{macaddr.MustParse("52:54:00:12:34:56"): netip.MustParseAddr("10.99.0.11")}
	cfg := dhcpConfig(t, "", res, nil)
	// The reserved machine gets its node address even asking for another.
	ip, _ := handshake(t, cfg, testMAC, reqIP("10.99.0.101"))
	if ip != netip.MustParseAddr("10.99.0.11") {
		t.Fatalf("reserved machine got %s", ip)
	}
	// Nobody else can take the reserved address.
	r := request(t, dhcpv4.MessageTypeRequest, hw(net.HardwareAddr{2, 0, 0, 0, 0, 9}), reqIP("10.99.0.11"))
	if x, _ := cfg.Handle(r, PortDHCP); x == nil || x.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatal("reserved address given to another MAC")
	}
	// DECLINE takes an address out of the pool.
	other := net.HardwareAddr{2, 0, 0, 0, 0, 7}
	ip2, _ := handshake(t, cfg, other)
	// Without our server identifier (RFC 2131 requires it) or from another
	// MAC, a DECLINE changes nothing.
	noSID := request(t, dhcpv4.MessageTypeDecline, hw(other), reqIP(ip2.String()))
	if _, ev := cfg.Handle(noSID, PortDHCP); ev.Ignored != "DECLINE for another server" {
		t.Fatalf("decline without server id: %q", ev.Ignored)
	}
	spoof := request(t, dhcpv4.MessageTypeDecline, hw(net.HardwareAddr{2, 0, 0, 0, 0, 6}), reqIP(ip2.String()), serverID(serverIP.String()))
	if _, ev := cfg.Handle(spoof, PortDHCP); ev.Ignored != ErrNotOwner.Error() {
		t.Fatalf("spoofed decline: %q", ev.Ignored)
	}
	if le, ok := cfg.Leases.Lookup(macaddr.MAC(other)); !ok || le.IP != ip2 {
		t.Fatalf("spoofed DECLINE took the lease: %+v %v", le, ok)
	}
	dec := request(t, dhcpv4.MessageTypeDecline, hw(other), reqIP(ip2.String()), serverID(serverIP.String()))
	if x, ev := cfg.Handle(dec, PortDHCP); x != nil || ev.Ignored != "DECLINE recorded" {
		t.Fatalf("decline: %q", ev.Ignored)
	}
	ip3, _ := handshake(t, cfg, other)
	if ip3 == ip2 || !ip3.IsValid() {
		t.Fatalf("declined address %s offered again (%s)", ip2, ip3)
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "leases.json")
	cfg := dhcpConfig(t, path, nil, nil)
	a := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	b := net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	ipA, _ := handshake(t, cfg, a)
	// "Restart": a new allocator from the same file.
	cfg2 := dhcpConfig(t, path, nil, nil)
	ipB, _ := handshake(t, cfg2, b)
	if ipB == ipA {
		t.Fatalf("address %s handed out twice after restart", ipA)
	}
	ipA2, _ := handshake(t, cfg2, a)
	if ipA2 != ipA {
		t.Fatalf("client lost its lease across restart: %s → %s", ipA, ipA2)
	}
	// A REQUEST for A's address from B after restart is refused.
	r := request(t, dhcpv4.MessageTypeRequest, hw(b), reqIP(ipA.String()))
	if x, _ := cfg2.Handle(r, PortDHCP); x == nil || x.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatal("restarted server gave a bound address away")
	}
}

func TestLeaseExpiryReuse(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	cfg := dhcpConfig(t, "", nil, clock)
	for i := byte(1); i <= 3; i++ {
		if ip, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 1, i}); !ip.IsValid() {
			t.Fatal("pool filled early")
		}
	}
	if ip, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 1, 9}); ip.IsValid() {
		t.Fatal("full pool gave an address")
	}
	now = now.Add(2 * time.Hour) // every lease expired
	if ip, _ := handshake(t, cfg, net.HardwareAddr{2, 0, 0, 0, 1, 9}); !ip.IsValid() {
		t.Fatal("expired leases not reused")
	}
}

func TestBadLeaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	if err := writeFile(path, "{not json"); err != nil {
		t.Fatal(err)
	}
	_, err := NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.2")})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad lease file: %v", err)
	}
	_, err = NewLeases(LeaseOptions{Start: netip.MustParseAddr("10.0.0.9"), End: netip.MustParseAddr("10.0.0.2")})
	if err == nil {
		t.Fatal("reversed range accepted")
	}
}

// FuzzHandle feeds raw bytes through dhcpv4.FromBytes and every decision
// (both modes, both ports): it must never panic, and proxy replies must
// never carry an address.
func FuzzHandle(f *testing.F) {
	for _, opts := range [][]reqOpt{ovmf, biosROM, biosPXE, chainEFI, arm64UEFI, httpX64, httpARM, udhcpc} {
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform} {
			f.Add(request(f, mt, append(opts, reqIP("10.99.0.101"))...).ToBytes())
		}
	}
	f.Add([]byte{})
	f.Add(make([]byte, 240))
	l, err := NewLeases(LeaseOptions{Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.110"),
		Reservations: map[macaddr.MAC]netip.Addr{macaddr.MustParse("52:54:00:12:34:56"): netip.MustParseAddr("10.99.0.11")}})
	if err != nil {
		f.Fatal(err)
	}
	dcfg := &Config{Mode: ModeDHCP, ServerIP: serverIP, HTTPURL: "http://10.99.0.1:8080", Leases: l,
		Subnet: netip.MustParsePrefix("10.99.0.0/24"), LeaseTime: time.Hour, Router: serverIP}
	pcfg := proxyConfig()
	pcfg.OnlyKnown = true
	pcfg.Known = func(macaddr.MAC) bool { return true }
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, port := range []Port{PortDHCP, PortPXE} {
			if r, _ := pcfg.Handle(m, port); r != nil {
				if !r.YourIPAddr.IsUnspecified() {
					t.Fatalf("proxy reply with yiaddr %s", r.YourIPAddr)
				}
				_ = r.ToBytes()
			}
			if r, _ := dcfg.Handle(m, port); r != nil {
				_ = r.ToBytes()
				_ = Destination(m, r, netip.MustParseAddrPort("0.0.0.0:68"), port)
			}
		}
	})
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// TestNewReplyMatchesLibrary: newReply builds byte for byte what
// dhcpv4.NewReplyFromRequest builds (relay agent info and client
// identifier copied, xid, flags, giaddr, chaddr from the request).
func TestNewReplyMatchesLibrary(t *testing.T) {
	relay := func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 3, 'a', 'b', 'c'}))
		m.GatewayIPAddr = net.ParseIP("10.1.0.1").To4()
	}
	clientID := func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 0, 9}))
		m.SetBroadcast()
	}
	for _, opts := range [][]reqOpt{nil, ovmf, {relay}, {clientID, relay}} {
		req := request(t, dhcpv4.MessageTypeDiscover, opts...)
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithServerIP(net.ParseIP("10.99.0.1"))}
		want, err := dhcpv4.NewReplyFromRequest(req, mods...)
		if err != nil {
			t.Fatal(err)
		}
		got := newReply(req, mods...)
		if !bytes.Equal(got.ToBytes(), want.ToBytes()) {
			t.Fatalf("newReply differs:\n%s\n%s", got.Summary(), want.Summary())
		}
	}
}

// TestDHCPModeDiscoveryControl: in dhcp mode, too, an offer and ACK of a
// TFTP boot file to a PXE client carry PXE discovery control 8 (option 43:
// use this boot file, no boot server discovery). Without it OVMF sent a
// REQUEST to port 4011 and waited about a second before loading the file
// (seen in the PXE boot benchmark). A plain client and UEFI HTTP boot get
// no option 43.
func TestDHCPModeDiscoveryControl(t *testing.T) {
	cases := []struct {
		name   string
		opts   []reqOpt
		want43 bool
	}{
		{"OVMF", ovmf, true},
		{"BIOS PXE", biosPXE, true},
		{"iPXE gets the script", chainEFI, true},
		{"plain client", udhcpc, false},
		{"UEFI HTTP boot", httpX64, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dhcpConfig(t, "", nil, nil)
			mac := net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}
			off, ev := cfg.Handle(request(t, dhcpv4.MessageTypeDiscover, append(tc.opts, hw(mac))...), PortDHCP)
			if off == nil {
				t.Fatalf("no offer: %s", ev.Ignored)
			}
			_, ack := handshake(t, cfg, mac, tc.opts...)
			for _, r := range []*dhcpv4.DHCPv4{off, ack} {
				r, err := dhcpv4.FromBytes(r.ToBytes())
				if err != nil {
					t.Fatal(err)
				}
				if got := r.GetOneOption(dhcpv4.OptionVendorSpecificInformation); tc.want43 != bytes.Equal(got, []byte{6, 1, 8, 255}) {
					t.Errorf("%s: option 43 = % x, want {6:8}: %v", r.MessageType(), got, tc.want43)
				}
			}
		})
	}
}
