package faketalos

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/phase"
	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/talos/compat"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// genConfig renders a machine config with machinery, as dodai's renderer
// does, with a static address on the link with the given MAC.
func genConfig(t *testing.T, in *generate.Input, typ mtype.Type, hostname, mac, addr string) []byte {
	t.Helper()
	cfg, err := in.Config(typ)
	if err != nil {
		t.Fatal(err)
	}
	// The patch below sets the hostname in the v1alpha1 document, which
	// Talos 1.12+ refuses next to the HostnameConfig document machinery's
	// generator writes for those contracts: drop that document.
	cfg, err = withoutHostnameConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := configpatcher.LoadPatch(fmt.Appendf(nil, `machine:
  network:
    hostname: %s
    interfaces:
      - deviceSelector: {hardwareAddr: "%s"}
        addresses: [%s/8]
`, hostname, mac, addr))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), []configpatcher.Patch{patch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	_ = encoder.CommentsDisabled
	return b
}

func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 100 + os.Getpid()%50
	maint := func(i int) string { return fmt.Sprintf("127.0.%d.%d", base, 10+i) }
	configured := func(i int) string { return fmt.Sprintf("127.0.%d.%d", base, 20+i) }

	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1",
		generate.WithSecretsBundle(bundle), generate.WithVersionContract(config.TalosVersion1_11),
		generate.WithInstallDisk("/dev/nvme0n1"), generate.WithEndpointList([]string{configured(0)}))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}

	g := NewGroup()
	kubeconfig := []byte("apiVersion: v1\nkind: Config\nclusters: []\n")
	cp, err := Start(Options{Name: "cp1", MaintenanceAddr: maint(0), Port: port, Group: g, Kubeconfig: kubeconfig,
		RebootDelay: 20 * time.Millisecond, Inventory: DefaultInventory("talos-cp1", "52:54:00:00:00:01"),
		Faults: Faults{BootstrapNotAvailable: 1, TimeNotInSync: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	wk, err := Start(Options{Name: "w1", MaintenanceAddr: maint(1), Port: port, Group: g,
		Inventory: DefaultInventory("talos-w1", "52:54:00:00:00:02")})
	if err != nil {
		t.Fatal(err)
	}
	defer wk.Close()

	// Maintenance mode: inventory through the real client, Version refused.
	mc, err := talos.Maintenance(ctx, talos.Endpoint(maint(0), port))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	m, err := talos.ReadMachine(ctx, mc, maint(0))
	if err != nil {
		t.Fatal(err)
	}
	if m.MAC != "52:54:00:00:00:01" || m.Stage != phase.Maintenance || m.TalosVersion != compat.DefaultTalosVersion || len(m.Disks) != 3 ||
		m.MemoryMiB != 32768 || m.Hostname != "talos-cp1" || len(m.Addresses) != 1 || m.Addresses[0] != maint(0)+"/8" {
		t.Fatalf("inventory: %+v", m)
	}
	if _, err := mc.Version(ctx); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Version in maintenance: %v", err)
	}
	// Modes and validation like the real maintenance service.
	cpCfg := genConfig(t, in, mtype.TypeControlPlane, "cp1", "52:54:00:00:00:01", configured(0))
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cpCfg, Mode: machine.ApplyConfigurationRequest_STAGED}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("staged: %v", err)
	}
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: []byte("machine: [")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("garbage: %v", err)
	}
	resp, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cpCfg, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
	if err != nil || len(resp.Messages) != 1 {
		t.Fatalf("dry run: %v", err)
	}
	if len(cp.Applied()) != 0 {
		t.Fatal("dry run applied")
	}

	// Apply the worker first: it must wait for a control plane (trustd).
	wc, err := talos.Maintenance(ctx, talos.Endpoint(maint(1), port))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	if _, err := wc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: genConfig(t, in, mtype.TypeWorker, "w1", "52:54:00:00:00:02", configured(1))}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cpCfg, Mode: machine.ApplyConfigurationRequest_AUTO}); err != nil {
		t.Fatal(err)
	}

	ac := waitAuth(ctx, t, tc, talos.Endpoint(configured(0), port))
	defer ac.Close()
	v, err := ac.Version(ctx)
	if err != nil || v.Messages[0].Version.Tag != compat.DefaultTalosVersion {
		t.Fatalf("version: %v", err)
	}
	stage, ready, err := talos.MachineStatus(ctx, ac.COSI)
	if err != nil || stage != phase.Running || !ready {
		t.Fatalf("machine status %s %v %v", stage, ready, err)
	}
	// The maintenance address is gone.
	if c, err := net.DialTimeout("tcp", talos.Endpoint(maint(0), port), time.Second); err == nil {
		c.Close()
		t.Fatal("maintenance address still answers")
	}
	// An untrusted client certificate is refused.
	other, _ := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	oin, _ := generate.NewInput("other", "https://127.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(other))
	otc, _ := oin.Talosconfig()
	oc, err := talos.Authenticated(ctx, otc, talos.Endpoint(configured(0), port))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Version(ctx); err == nil {
		t.Fatal("foreign talosconfig accepted")
	}
	oc.Close()

	svc, err := ac.ServiceInfo(ctx, "etcd")
	if err != nil || len(svc) != 1 || svc[0].Service.State != "Preparing" {
		t.Fatalf("etcd before bootstrap: %+v %v", svc, err)
	}
	for i, want := range []string{"bootstrap is not available yet", "time is not in sync yet"} {
		err := ac.Bootstrap(ctx, &machine.BootstrapRequest{})
		if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
			t.Fatalf("bootstrap %d: %v", i, err)
		}
	}
	if err := ac.Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := ac.Bootstrap(ctx, &machine.BootstrapRequest{}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second bootstrap: %v", err)
	}
	if g.Bootstrapped() != cp || g.BootstrapCalls() != 4 {
		t.Fatalf("bootstrapped %v calls %d", g.Bootstrapped(), g.BootstrapCalls())
	}
	svc, err = ac.ServiceInfo(ctx, "etcd")
	if err != nil || svc[0].Service.State != "Running" || !svc[0].Service.Health.Healthy {
		t.Fatalf("etcd after bootstrap: %+v %v", svc, err)
	}
	members, err := ac.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
	if err != nil || len(members.Messages[0].Members) != 1 || members.Messages[0].Members[0].Hostname != "cp1" {
		t.Fatalf("members: %v %v", members, err)
	}
	kc, err := ac.Kubeconfig(ctx)
	if err != nil || string(kc) != string(kubeconfig) {
		t.Fatalf("kubeconfig %q %v", kc, err)
	}

	// The worker came up with a certificate from the cluster CA.
	wac := waitAuth(ctx, t, tc, talos.Endpoint(configured(1), port))
	defer wac.Close()
	if err := wac.Bootstrap(ctx, &machine.BootstrapRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("bootstrap on worker: %v", err)
	}
	if _, err := wac.Kubeconfig(ctx); err == nil {
		t.Fatal("kubeconfig on worker")
	}
}

func waitAuth(ctx context.Context, t *testing.T, tc *clientconfig.Config, ep string) *client.Client {
	t.Helper()
	c, err := talos.Authenticated(ctx, tc, ep)
	if err != nil {
		t.Fatal(err)
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Version(cctx)
		cancel()
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("node %s never came back: %v", ep, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 150 + os.Getpid()%50
	bundle, _ := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	in, _ := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(bundle), generate.WithInstallDisk("/dev/sda"))
	addr := fmt.Sprintf("127.0.%d.30", base)
	n, err := Start(Options{MaintenanceAddr: addr, Port: port, Inventory: DefaultInventory("x", "52:54:00:00:00:09"),
		Faults: Faults{ApplyError: "installer image pull failed: no route to host"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, _ := talos.Maintenance(ctx, talos.Endpoint(addr, port))
	defer c.Close()
	cfg := genConfig(t, in, mtype.TypeControlPlane, "x", "52:54:00:00:00:09", fmt.Sprintf("127.0.%d.31", base))
	if _, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, DryRun: true}); err != nil {
		t.Fatalf("dry run with apply fault: %v", err)
	}
	_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg})
	if status.Code(err) != codes.Internal || n.Phase() != "maintenance" || len(n.Applied()) != 0 {
		t.Fatalf("apply fault: %v phase %s", err, n.Phase())
	}

	addr2 := fmt.Sprintf("127.0.%d.32", base)
	gone, err := Start(Options{MaintenanceAddr: addr2, Port: port, Inventory: DefaultInventory("y", "52:54:00:00:00:0a"), Faults: Faults{NeverReturn: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	c2, _ := talos.Maintenance(ctx, talos.Endpoint(addr2, port))
	defer c2.Close()
	if _, err := c2.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: genConfig(t, in, mtype.TypeControlPlane, "y", "52:54:00:00:00:0a", fmt.Sprintf("127.0.%d.33", base))}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for gone.Phase() != "gone" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if gone.Phase() != "gone" {
		t.Fatalf("phase %s", gone.Phase())
	}
}
