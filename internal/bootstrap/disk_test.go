package bootstrap

import (
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/talos"
)

func TestResolveDisk(t *testing.T) {
	nvme := talos.Disk{Name: "nvme0n1", DevPath: "/dev/nvme0n1", Size: 512110190592, PrettySize: "512 GB", Model: "Samsung SSD 980 PRO 512GB", Serial: "S5GX1", WWID: "eui.1", Transport: "nvme"}
	hdd1 := talos.Disk{Name: "sda", DevPath: "/dev/sda", Size: 4000787030016, PrettySize: "4.0 TB", Model: "ST4000NM000A", Serial: "ZC11", WWID: "naa.1", Transport: "sata", Rotational: true}
	hdd2 := talos.Disk{Name: "sdb", DevPath: "/dev/sdb", Size: 4000787030016, PrettySize: "4.0 TB", Model: "ST4000NM000A", Serial: "ZC12", WWID: "naa.2", Transport: "sata", Rotational: true}
	usb := talos.Disk{Name: "sdc", DevPath: "/dev/sdc", Size: 32017047552, PrettySize: "32 GB", Model: "SanDisk Ultra", Serial: "4C53", Transport: "usb"}
	ro := talos.Disk{Name: "sdd", DevPath: "/dev/sdd", Size: 240057409536, PrettySize: "240 GB", Model: "RO SSD", Serial: "RO1", Transport: "sata", Readonly: true}
	cd := talos.Disk{Name: "sr0", DevPath: "/dev/sr0", Size: 1073741824, PrettySize: "1.1 GB", Model: "DVD", CDROM: true}
	all := []talos.Disk{nvme, hdd1, hdd2, usb, ro, cd}

	sel := func(s cluster.DiskSelector) cluster.InstallDisk { return cluster.InstallDisk{Selector: &s} }
	tests := []struct {
		name    string
		disk    cluster.InstallDisk
		disks   []talos.Disk
		want    string // DevPath, or "" when an error is expected
		wantErr string
	}{
		{"explicit path", cluster.InstallDisk{Path: "/dev/sda"}, all, "/dev/sda", ""},
		{"explicit path missing", cluster.InstallDisk{Path: "/dev/vda"}, all, "", "/dev/vda does not exist on the machine"},
		{"explicit path usb", cluster.InstallDisk{Path: "/dev/sdc"}, all, "", "USB disk"},
		{"explicit path read-only", cluster.InstallDisk{Path: "/dev/sdd"}, all, "", "read-only"},
		{"explicit path cdrom", cluster.InstallDisk{Path: "/dev/sr0"}, all, "", "CD-ROM"},
		{"selector by serial", sel(cluster.DiskSelector{Serial: "ZC12"}), all, "/dev/sdb", ""},
		{"selector by wwid", sel(cluster.DiskSelector{WWID: "eui.1"}), all, "/dev/nvme0n1", ""},
		{"selector by size approx", sel(cluster.DiskSelector{Size: "500GB"}), all, "/dev/nvme0n1", ""},
		{"selector by size range", sel(cluster.DiskSelector{Size: "<= 600GB", Type: "ssd"}), all, "", "matches 3 disks"},
		{"selector by size and model", sel(cluster.DiskSelector{Size: ">= 1TB", Model: "ST4000*"}), all, "", "matches 2 disks"},
		{"selector by type", sel(cluster.DiskSelector{Type: "nvme"}), all, "/dev/nvme0n1", ""},
		{"ambiguous", sel(cluster.DiskSelector{Type: "hdd"}), all, "", "matches 2 disks, refusing to guess: /dev/sda"},
		{"none", sel(cluster.DiskSelector{Serial: "nope"}), all, "", "matches no disk; its disks: /dev/nvme0n1"},
		{"only usb matches", sel(cluster.DiskSelector{Model: "SanDisk*"}), all, "", "matches only /dev/sdc"},
		{"only read-only matches", sel(cluster.DiskSelector{Serial: "RO1"}), all, "", "read-only"},
		{"no selector single safe disk", cluster.InstallDisk{}, []talos.Disk{nvme, usb, cd}, "/dev/nvme0n1", ""},
		{"no selector several disks", cluster.InstallDisk{}, all, "", "matches 3 disks"},
		{"no disks", sel(cluster.DiskSelector{Type: "nvme"}), nil, "", "its disks: none"},
		{"bad model glob", sel(cluster.DiskSelector{Model: "[x"}), all, "", "model pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := &cluster.Node{Name: "n1", InstallDisk: tt.disk}
			d, err := ResolveDisk(node, tt.disks)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "node n1: ") {
					t.Fatalf("error %v, want one containing %q and naming the node", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.DevPath != tt.want {
				t.Fatalf("got %s, want %s", d.DevPath, tt.want)
			}
		})
	}
}

func TestCheckConfirmed(t *testing.T) {
	a := talos.Disk{DevPath: "/dev/sda", Serial: "A", WWID: "w1", Size: 1}
	b := talos.Disk{DevPath: "/dev/sda", Serial: "B", WWID: "w2", Size: 1}
	if err := CheckConfirmed("n1", nil, a); err != nil {
		t.Fatal(err)
	}
	if err := CheckConfirmed("n1", recordOf(a), a); err != nil {
		t.Fatal(err)
	}
	err := CheckConfirmed("n1", recordOf(a), b)
	if err == nil || !strings.Contains(err.Error(), "node n1: install disk now resolves to /dev/sda") || !strings.Contains(err.Error(), `serial "A"`) {
		t.Fatalf("got %v", err)
	}
}

// FuzzResolveDisk: disk properties come from the node over the network;
// whatever they are, resolution never panics, never picks an unsafe disk,
// and a chosen disk matches the selector it was chosen by.
func FuzzResolveDisk(f *testing.F) {
	f.Add("nvme0n1", "Samsung SSD*", "S1", "eui.1", "nvme", uint64(512110190592), false, false, "500GB", "nvme", "")
	f.Add("sdb", "SanDisk", "", "", "usb", uint64(32017047552), false, false, "", "", "/dev/sdb")
	f.Add("sr0", "[", "x", "", "", uint64(0), true, true, ">= 1TB", "hdd", "")
	f.Fuzz(func(t *testing.T, name, model, serial, wwid, transport string, size uint64, ro, cdrom bool, selSize, selType, path string) {
		d := talos.Disk{Name: name, DevPath: "/dev/" + name, Size: size, Model: model, Serial: serial, WWID: wwid, Transport: transport, Readonly: ro, CDROM: cdrom}
		other := talos.Disk{Name: "vda", DevPath: "/dev/vda", Size: 1 << 34, Transport: "virtio"}
		node := &cluster.Node{Name: "n", InstallDisk: cluster.InstallDisk{Path: path}}
		if path == "" {
			node.InstallDisk.Selector = &cluster.DiskSelector{Size: selSize, Type: selType, Model: model, Serial: serial}
		}
		got, err := ResolveDisk(node, []talos.Disk{d, other})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "node n: ") {
				t.Fatalf("error without node: %v", err)
			}
			return
		}
		if UnsafeReason(got) != "" {
			t.Fatalf("picked unsafe disk %+v", got)
		}
		if node.InstallDisk.Selector != nil {
			if ok, _ := matchSelector(got, node.InstallDisk.Selector); !ok {
				t.Fatalf("picked %+v not matching %+v", got, node.InstallDisk.Selector)
			}
		}
	})
}
