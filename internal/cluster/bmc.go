package cluster

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// BMC protocols.
const (
	BMCProtocolIPMI    = "ipmi"
	BMCProtocolRedfish = "redfish"
)

// Default BMC ports.
const (
	DefaultIPMIPort    = 623
	DefaultRedfishPort = 443
)

// BMC boot modes for a PXE boot override.
const (
	BootModeLegacy = "legacy"
	BootModeUEFI   = "uefi"
)

// BMC is a node's baseboard management controller. Credentials live in
// bmc-credentials.yaml (or environment variables), never here.
type BMC struct {
	// Address is the BMC's IP address or host name (no scheme, no port).
	Address string `yaml:"address" json:"address"`
	// Protocol: ipmi (IPMI v2.0 over LAN, RMCP+; default) or redfish (HTTPS).
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty" jsonschema:"enum=ipmi,enum=redfish"`
	// Port: default 623 (ipmi) or 443 (redfish).
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// BootMode of a PXE boot override: legacy or uefi. IPMI: uefi sets the
	// EFI boot flag (ipmitool's options=efiboot), default legacy, as
	// ipmitool. Redfish: BootSourceOverrideMode; default unchanged.
	BootMode string `yaml:"bootMode,omitempty" json:"bootMode,omitempty" jsonschema:"enum=legacy,enum=uefi"`
	// CipherSuite (ipmi only) pins the RMCP+ cipher suite (e.g. 3 or 17)
	// instead of asking the BMC for its list; for BMCs that don't answer
	// Get Channel Cipher Suites.
	CipherSuite int `yaml:"cipherSuite,omitempty" json:"cipherSuite,omitempty"`
	// Insecure (redfish only) skips verification of the BMC's TLS certificate.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
}

// IPMI cipher suites dodai can use (IPMI v2.0 table 22-20, the ones with
// an authentication algorithm).
var ipmiCipherSuites = map[int]bool{1: true, 2: true, 3: true, 6: true, 7: true, 8: true, 11: true, 12: true, 15: true, 16: true, 17: true}

func defaultBMCs(s *Spec) {
	for i := range s.Nodes {
		b := s.Nodes[i].BMC
		if b == nil {
			continue
		}
		if b.Protocol == "" {
			b.Protocol = BMCProtocolIPMI
		}
		if b.Port == 0 {
			switch b.Protocol {
			case BMCProtocolIPMI:
				b.Port = DefaultIPMIPort
			case BMCProtocolRedfish:
				b.Port = DefaultRedfishPort
			}
		}
	}
}

func (v *validator) bmcs() {
	seen := map[string]int{}
	for i, n := range v.src.Cluster.Spec.Nodes {
		b := n.BMC
		if b == nil {
			continue
		}
		p := fmt.Sprintf("spec.nodes[%d].bmc", i)
		known := b.Protocol == BMCProtocolIPMI || b.Protocol == BMCProtocolRedfish
		if !known {
			v.errf(p+".protocol", "must be ipmi or redfish, got %q", b.Protocol)
		}
		if known && (b.Port < 1 || b.Port > 65535) {
			v.errf(p+".port", "%d is not a port (1-65535)", b.Port)
		}
		switch {
		case b.Address == "":
			v.errf(p+".address", "is required (the BMC's IP address or host name)")
		case !validBMCHost(b.Address):
			v.errf(p+".address", "%q is not an IP address or host name (no scheme, port or path: use port for the port)", b.Address)
		default:
			key := strings.ToLower(b.Address) + ":" + strconv.Itoa(b.Port)
			if j, dup := seen[key]; dup {
				v.errf(p+".address", "%s port %d is also the BMC of spec.nodes[%d]", b.Address, b.Port, j)
			}
			seen[key] = i
		}
		if b.BootMode != "" && b.BootMode != BootModeLegacy && b.BootMode != BootModeUEFI {
			v.errf(p+".bootMode", "must be legacy or uefi, got %q", b.BootMode)
		}
		if b.CipherSuite != 0 && known {
			if b.Protocol != BMCProtocolIPMI {
				v.errf(p+".cipherSuite", "is for protocol ipmi only")
			} else if !ipmiCipherSuites[b.CipherSuite] {
				v.errf(p+".cipherSuite", "%d is not an RMCP+ cipher suite with authentication (1-3, 6-8, 11, 12, 15-17)", b.CipherSuite)
			}
		}
		if b.Insecure && known && b.Protocol != BMCProtocolRedfish {
			v.errf(p+".insecure", "is for protocol redfish only")
		}
	}
}

// validBMCHost accepts an IP address or a DNS name.
func validBMCHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 || strings.HasSuffix(h, ".") {
		return false
	}
	for _, l := range strings.Split(strings.ToLower(h), ".") {
		if !dnsLabelRe.MatchString(l) {
			return false
		}
	}
	return true
}
