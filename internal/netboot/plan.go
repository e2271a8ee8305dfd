package netboot

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/netboot/ipxe"
)

// Plan describes, offline, what `dodai netboot` will do for this cluster:
// the mode and network, and for every known machine its reservation and
// the iPXE script it will get. `dodai render` writes it to
// generated/netboot-plan.txt so it can be reviewed before anything runs.
func Plan(spec cluster.Spec) (string, error) {
	b := spec.Boot
	server := b.ServerAddress
	if server == "" {
		server = "SERVER"
	}
	base := "http://" + server + ":8080"
	var s strings.Builder
	fmt.Fprintf(&s, "# dodai netboot plan (what `dodai netboot` serves for this cluster file)\n")
	fmt.Fprintf(&s, "mode:       %s\n", b.Mode)
	fmt.Fprintf(&s, "interface:  %s\n", orDash(b.Interface))
	fmt.Fprintf(&s, "server:     %s (HTTP %s)\n", server, base)
	if b.Mode == cluster.BootModeDHCP {
		rng := "-"
		if b.Range != nil {
			rng = b.Range.Start + "-" + b.Range.End
		}
		fmt.Fprintf(&s, "subnet:     %s, range %s, router %s, dns %s, lease %s\n", b.Subnet, rng, orDash(b.Router), orDash(strings.Join(b.DNS, ",")), b.LeaseTime)
	} else {
		fmt.Fprintf(&s, "addresses:  from the site's DHCP server (proxyDHCP answers boot clients only, never assigns)\n")
	}
	fmt.Fprintf(&s, "answers:    %s\n", map[bool]string{true: "only the MACs below (onlyKnown)", false: "every PXE/HTTP boot client; unknown machines boot to maintenance mode"}[b.OnlyKnown])
	serve := b.Mode == cluster.BootModeDHCP
	if serve {
		fmt.Fprintf(&s, "configs:    over HTTP (talos.config=), only to the address dodai leased to the machine\n")
	} else {
		fmt.Fprintf(&s, "configs:    not over HTTP: machines boot into Talos maintenance mode, dodai bootstrap applies configs over the Talos API (--serve-configs changes that)\n")
	}
	fmt.Fprintf(&s, "boot files: BIOS %s, UEFI x86-64 %s, UEFI arm64 %s, UEFI HTTP boot %s/ipxe/%s\n\n", dhcp.FileUndionly, dhcp.FileSNPOnly, dhcp.FileARM64SNP, base, dhcp.FileSNPOnly)

	tw := tabwriter.NewWriter(&s, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tMAC\tRESERVED ADDRESS\tCONFIG")
	for _, n := range spec.Nodes {
		resMAC, _ := macaddr.Parse(AddressMAC(n))
		for _, m := range n.MACs {
			mac, err := macaddr.Parse(m)
			if err != nil {
				return "", err
			}
			addr := "-"
			if n.Address != "" && b.Mode == cluster.BootModeDHCP && mac == resMAC {
				addr = strings.SplitN(n.Address, "/", 2)[0]
			}
			config := "Talos API (dodai bootstrap)"
			if serve {
				config = base + "/config?mac=" + mac.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, mac, addr, config)
		}
	}
	if err := tw.Flush(); err != nil {
		return "", err
	}
	for _, n := range spec.Nodes {
		if len(n.MACs) == 0 {
			continue
		}
		mac, err := macaddr.Parse(AddressMAC(n))
		if err != nil {
			return "", err
		}
		script, err := ipxe.Boot(ipxe.Params{BaseURL: base, MAC: mac, Arch: spec.Image.Arch, Config: serve, ExtraArgs: spec.Image.ExtraKernelArgs})
		if err != nil {
			return "", fmt.Errorf("node %s: %w", n.Name, err)
		}
		fmt.Fprintf(&s, "\n## %s: GET %s/boot.ipxe?mac=%s&arch=%s\n%s", n.Name, base, mac, spec.Image.Arch, script)
	}
	return s.String(), nil
}

// AddressMAC is the MAC of the link that carries a node's address (its
// interface.mac, else its first MAC): the one its DHCP reservation is for.
func AddressMAC(n cluster.Node) string {
	if n.Interface != nil && n.Interface.MAC != "" {
		return n.Interface.MAC
	}
	if len(n.MACs) == 0 {
		return ""
	}
	return n.MACs[0]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
