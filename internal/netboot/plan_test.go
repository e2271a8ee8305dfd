package netboot

import (
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
)

func TestPlan(t *testing.T) {
	body, err := cluster.Template(true, cluster.TemplateParams{Name: "demo", Endpoint: "https://192.168.100.10:6443"})
	if err != nil {
		t.Fatal(err)
	}
	src, probs := cluster.Parse("cluster.yaml", body)
	if src == nil {
		t.Fatal(probs)
	}
	spec := src.Cluster.Spec
	plan, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mode:       proxy", "interface:  eth1", "never assigns",
		"worker1   worker         52:54:00:20:00:11", // both NICs of worker1 are listed
		"## cp1: GET http://SERVER:8080/boot.ipxe?mac=52:54:00:10:00:01&arch=amd64",
		"cp1       controlplane   52:54:00:10:00:01   -                  Talos API (dodai bootstrap)",
		"printk.devkmsg=on initrd=initramfs.xz console=ttyS0,115200",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if strings.Contains(plan, "talos.config") {
		t.Errorf("proxy-mode plan serves configs:\n%s", plan)
	}
	spec.Boot.Mode, spec.Boot.ServerAddress = cluster.BootModeDHCP, "192.168.100.2"
	spec.Boot.Range = &cluster.AddressRange{Start: "192.168.100.100", End: "192.168.100.199"}
	plan, err = Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"range 192.168.100.100-192.168.100.199", "talos.config=http://192.168.100.2:8080/config?mac=${mac} console=ttyS0,115200", "192.168.100.11     http://192.168.100.2:8080/config?mac=52:54:00:10:00:01",
		"worker1   worker         52:54:00:20:00:01   -    ", "worker1   worker         52:54:00:20:00:11   192.168.100.21"} {
		if !strings.Contains(plan, want) {
			t.Errorf("dhcp plan lacks %q:\n%s", want, plan)
		}
	}
}
