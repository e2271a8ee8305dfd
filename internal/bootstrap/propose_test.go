package bootstrap

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

var (
	propNVMe = talos.Disk{Name: "nvme0n1", DevPath: "/dev/nvme0n1", Serial: "S1", Transport: "nvme", Size: 512e9}
	propSATA = talos.Disk{Name: "sda", DevPath: "/dev/sda", Serial: "Z1", Transport: "sata", Size: 4e12, Rotational: true}
	propUSB  = talos.Disk{Name: "sdb", DevPath: "/dev/sdb", Serial: "U1", Transport: "usb", Size: 32e9}
)

// discovered is a discovered machine: MAC 52:54:00:00:00:0N on 10.0.0.N/24
// with one link carrying the address, an NVMe and a SATA disk.
func discovered(n int, disks ...talos.Disk) *talos.Machine {
	mac := fmt.Sprintf("52:54:00:00:00:%02d", n)
	if disks == nil {
		disks = []talos.Disk{propNVMe, propSATA}
	}
	return &talos.Machine{MAC: mac, Address: fmt.Sprintf("10.0.0.%d", n), Disks: disks,
		Links:     []talos.Link{{Name: "eth1", MAC: fmt.Sprintf("52:54:00:00:01:%02d", n)}, {Name: "eth0", MAC: mac, Addresses: []string{fmt.Sprintf("10.0.0.%d/24", n)}}},
		Addresses: []string{fmt.Sprintf("10.0.0.%d/24", n)}, Gateway: "10.0.0.254", DNS: []string{"10.0.0.53"}}
}

func node(name, role string, macs ...string) cluster.Node {
	return cluster.Node{Name: name, Role: role, MACs: macs}
}

// TestPropose: the interactive mode's decisions, one table row each.
func TestPropose(t *testing.T) {
	placeholder := node("cp1", cluster.RoleControlPlane, "52:54:00:ff:ff:ff") // `dodai init`'s, no such machine
	known := node("cp1", cluster.RoleControlPlane, "52:54:00:00:00:01")
	known.Address, known.Gateway, known.Nameservers = "192.168.1.11/24", "192.168.1.1", []string{"192.168.1.53"}
	known.InstallDisk = cluster.InstallDisk{Selector: &cluster.DiskSelector{Type: "hdd"}}
	known.Interface = &cluster.Interface{MAC: "52-54-00-00-01-01"} // another notation
	m1, m2, m3, m4, m5 := discovered(1), discovered(2), discovered(3), discovered(4), discovered(5)
	usbFirst := discovered(6, propUSB, propSATA)

	cases := []struct {
		name       string
		nodes      []cluster.Node
		st         *state.Bootstrap
		discovered []*talos.Machine
		picked     []*talos.Machine
		// want, per picked machine: "name role disk interface address"
		want      []string
		protected string
	}{
		{
			name:  "new machines: three control planes, then workers; the placeholder's name is free",
			nodes: []cluster.Node{placeholder}, discovered: []*talos.Machine{m1, m2, m3, m4, m5}, picked: []*talos.Machine{m1, m2, m3, m4, m5},
			want: []string{
				"cp1 controlplane /dev/nvme0n1 52:54:00:00:00:01 10.0.0.1/24", "cp2 controlplane /dev/nvme0n1 52:54:00:00:00:02 10.0.0.2/24",
				"cp3 controlplane /dev/nvme0n1 52:54:00:00:00:03 10.0.0.3/24", "w1 worker /dev/nvme0n1 52:54:00:00:00:04 10.0.0.4/24",
				"w2 worker /dev/nvme0n1 52:54:00:00:00:05 10.0.0.5/24",
			},
		},
		{
			name:  "a known machine keeps its node's settings (canonical interface MAC, disk from its selector); its name and control-plane slot are taken",
			nodes: []cluster.Node{known}, discovered: []*talos.Machine{m1, m2}, picked: []*talos.Machine{m1, m2},
			want:      []string{"cp1 controlplane /dev/sda 52:54:00:00:01:01 192.168.1.11/24", "cp2 controlplane /dev/nvme0n1 52:54:00:00:00:02 10.0.0.2/24"},
			protected: "cp1",
		},
		{
			name:  "a known machine not picked still takes its name",
			nodes: []cluster.Node{known}, discovered: []*talos.Machine{m1, m2}, picked: []*talos.Machine{m2},
			want: []string{"cp2 controlplane /dev/nvme0n1 52:54:00:00:00:02 10.0.0.2/24"}, protected: "cp1",
		},
		{
			name:  "a node bootstrap worked on is real even when not discovered now",
			nodes: []cluster.Node{placeholder, node("cp2", cluster.RoleControlPlane, "52:54:00:aa:00:02"), node("cp3", cluster.RoleControlPlane, "52:54:00:aa:00:03")},
			st:    &state.Bootstrap{Nodes: map[string]*state.Node{"cp2": {}, "cp3": {}}}, discovered: []*talos.Machine{m1, m2}, picked: []*talos.Machine{m1, m2},
			want:      []string{"cp1 controlplane /dev/nvme0n1 52:54:00:00:00:01 10.0.0.1/24", "w1 worker /dev/nvme0n1 52:54:00:00:00:02 10.0.0.2/24"},
			protected: "cp2,cp3",
		},
		{
			name:  "the proposed disk is the first safe one: never the USB stick",
			nodes: nil, discovered: []*talos.Machine{usbFirst}, picked: []*talos.Machine{usbFirst},
			want: []string{"cp1 controlplane /dev/sda 52:54:00:00:00:06 10.0.0.6/24"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := &cluster.Cluster{Spec: cluster.Spec{Nodes: c.nodes}}
			p := Propose(cl, c.st, c.discovered, c.picked)
			var got []string
			for _, mp := range p.Machines {
				a := mp.Edit
				got = append(got, strings.Join([]string{a.Name, a.Role, a.DiskPath, a.InterfaceMAC, a.Address}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			var prot []string
			for _, n := range []string{"cp1", "cp2", "cp3", "w1"} {
				if p.Protected[n] {
					prot = append(prot, n)
				}
			}
			if strings.Join(prot, ",") != c.protected {
				t.Fatalf("protected %v, want %s", prot, c.protected)
			}
			for _, mp := range p.Machines {
				for _, d := range mp.Disks {
					if UnsafeReason(d) != "" {
						t.Fatalf("unsafe disk offered: %+v", d)
					}
				}
			}
		})
	}
}

// A known machine's gateway and DNS come from its node; a new machine's
// from what it uses now.
func TestProposeNetworkPrefill(t *testing.T) {
	known := node("w1", cluster.RoleWorker, "52:54:00:00:00:01")
	known.Gateway, known.Nameservers = "192.168.1.1", []string{"192.168.1.53"}
	p := Propose(&cluster.Cluster{Spec: cluster.Spec{Nodes: []cluster.Node{known}}}, nil, []*talos.Machine{discovered(1), discovered(2)}, []*talos.Machine{discovered(1), discovered(2)})
	if a := p.Machines[0].Edit; a.Gateway != "192.168.1.1" || fmt.Sprint(a.DNS) != "[192.168.1.53]" || p.Machines[0].Node != "w1" {
		t.Fatalf("known: %+v", a)
	}
	if a := p.Machines[1].Edit; a.Gateway != "10.0.0.254" || fmt.Sprint(a.DNS) != "[10.0.0.53]" || p.Machines[1].Node != "" {
		t.Fatalf("new: %+v", a)
	}
}

func TestCheckNameAndFinish(t *testing.T) {
	known := node("cp1", cluster.RoleControlPlane, "52:54:00:00:00:01")
	p := Propose(&cluster.Cluster{Spec: cluster.Spec{Nodes: []cluster.Node{known}}}, nil, []*talos.Machine{discovered(1), discovered(2)}, []*talos.Machine{discovered(1), discovered(2)})
	own, other := p.Machines[0], p.Machines[1]
	cases := []struct {
		mp   MachineProposal
		name string
		err  string
	}{
		{own, "cp1", ""},
		{other, "cp1", "cp1 is another machine's node"},
		{other, "w7", ""},
		{other, "Bad_Name", "lowercase letters"},
		{other, "", "lowercase letters"},
	}
	for _, c := range cases {
		err := p.CheckName(c.mp, c.name)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("CheckName(%s, %q) = %v, want %q", c.mp.Machine.MAC, c.name, err, c.err)
		}
	}
	a, d := other.Finish(clusterdir.NodeEdit{Name: "w1", DiskPath: "/dev/sda", DiskSerial: "stale"})
	if a.DiskSerial != "Z1" || d.DevPath != "/dev/sda" {
		t.Fatalf("finish: %+v %+v", a, d)
	}
	if a, d = other.Finish(clusterdir.NodeEdit{DiskPath: "/dev/nope", DiskSerial: "stale"}); a.DiskSerial != "" || d.DevPath != "" {
		t.Fatalf("finish with an unknown path: %+v %+v", a, d)
	}
}
