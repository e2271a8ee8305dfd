// Command faketalos runs fake Talos machines in maintenance mode on
// loopback addresses, for trying dodai discover/bootstrap by hand and for
// producing the documentation's examples. It prints the cluster.yaml nodes
// section matching the machines and runs until interrupted.
//
//	go run ./test/faketalos/cmd/faketalos -n 5 -net 127.0.10 -port 50000 -kubeconfig kubeconfig
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dodai-dev/dodai/test/faketalos"
)

func main() {
	n := flag.Int("n", 5, "number of machines (the first 3 are meant as control planes)")
	cps := flag.Int("cp", 3, "how many of them the printed nodes section makes control planes")
	netw := flag.String("net", "127.0.10", "first three octets of the maintenance addresses (machines get .1, .2, …)")
	cfgNet := flag.String("config-net", "127.0.11", "first three octets of the configured addresses in the printed nodes section")
	port := flag.Int("port", faketalos.DefaultPort, "Talos API port")
	kc := flag.String("kubeconfig", "", "kubeconfig the control planes hand out")
	delay := flag.Duration("reboot-delay", 500*time.Millisecond, "time a machine is away after apply")
	flag.Parse()
	var kubeconfig []byte
	if *kc != "" {
		b, err := os.ReadFile(*kc)
		if err != nil {
			log.Fatal(err)
		}
		kubeconfig = b
	}
	g := faketalos.NewGroup()
	fmt.Println("  nodes:")
	for i := 1; i <= *n; i++ {
		mac := fmt.Sprintf("52:54:00:12:34:%02x", i)
		host := fmt.Sprintf("talos-%03d-%02x", i*7, i*13)
		node, err := faketalos.Start(faketalos.Options{Name: host, MaintenanceAddr: fmt.Sprintf("%s.%d", *netw, i), Port: *port,
			Inventory: faketalos.DefaultInventory(host, mac), RebootDelay: *delay, Kubeconfig: kubeconfig, Group: g})
		if err != nil {
			log.Fatal(err)
		}
		defer node.Close()
		name, role := fmt.Sprintf("cp%d", i), "controlplane"
		if i > *cps {
			name, role = fmt.Sprintf("w%d", i-*cps), "worker"
		}
		fmt.Printf("    - name: %s\n      role: %s\n      macs: [\"%s\"]\n      address: %s.%d/8\n      installDisk:\n        selector: {type: nvme}\n", name, role, mac, *cfgNet, i)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
