package faketalos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
)

// ClusterOptions describe a small cluster of fake nodes that StartCluster
// installs by itself (machinery-generated configs applied through the
// maintenance API, etcd bootstrapped on the first control plane): a
// starting point for tests of day-2 operations that need no cluster file.
type ClusterOptions struct {
	ControlPlanes, Workers int
	// Base is "127.X.Y": maintenance addresses are Base.N, configured ones
	// 127.X.(Y+1).N (N = 1…, control planes first).
	Base string
	// Port of every node (0: a free one).
	Port int
	// RebootDelay of every node.
	RebootDelay time.Duration
	// Kubeconfig handed out by the control planes.
	Kubeconfig []byte
	// Etcd is the real etcd behind the members (optional).
	Etcd *EtcdBackend
}

// Cluster is a started, installed cluster of fake nodes.
type Cluster struct {
	Group *Group
	// Nodes in order: cp1…cpN, w1…wM.
	Nodes []*Node
	// Addresses are the configured addresses by node name.
	Addresses map[string]string
	// Talosconfig is an admin talosconfig of the cluster.
	Talosconfig *clientconfig.Config
	Port        int
	// Input generates more node configs of the same cluster.
	Input *generate.Input
}

// Node returns the node of that name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Close()
	}
}

// NodeConfig renders a machine config of this cluster for one node: its
// hostname, and its address on the link with the given MAC.
func (c *Cluster) NodeConfig(typ mtype.Type, hostname, mac, addr string) ([]byte, error) {
	cfg, err := c.Input.Config(typ)
	if err != nil {
		return nil, err
	}
	patch, err := configpatcher.LoadPatch(fmt.Appendf(nil, `machine:
  network:
    hostname: %s
    interfaces:
      - deviceSelector: {hardwareAddr: "%s"}
        addresses: [%s/8]
`, hostname, mac, addr))
	if err != nil {
		return nil, err
	}
	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), []configpatcher.Patch{patch})
	if err != nil {
		return nil, err
	}
	return out.Bytes()
}

// StartCluster starts and installs a cluster of fake nodes; it returns when
// every node answers the authenticated API and every control plane is a
// healthy etcd member.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.ControlPlanes < 1 {
		return nil, errors.New("a cluster needs a control plane")
	}
	if o.Port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		o.Port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var a, b, c3 int
	if _, err := fmt.Sscanf(o.Base, "%d.%d.%d", &a, &b, &c3); err != nil || a != 127 {
		return nil, fmt.Errorf("base %q: want 127.X.Y", o.Base)
	}
	cfgBase := fmt.Sprintf("127.%d.%d", b, c3+1)
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	if err != nil {
		return nil, err
	}
	in, err := generate.NewInput("fake", "https://"+cfgBase+".1:6443", "1.34.1",
		generate.WithSecretsBundle(bundle), generate.WithVersionContract(config.TalosVersion1_11),
		generate.WithInstallDisk("/dev/nvme0n1"), generate.WithEndpointList([]string{cfgBase + ".1"}))
	if err != nil {
		return nil, err
	}
	tc, err := in.Talosconfig()
	if err != nil {
		return nil, err
	}
	cl := &Cluster{Group: NewGroup(), Addresses: map[string]string{}, Talosconfig: tc, Port: o.Port, Input: in}
	if o.Etcd != nil {
		cl.Group.SetEtcdBackend(*o.Etcd)
	}
	ok := false
	defer func() {
		if !ok {
			cl.Close()
		}
	}()
	total := o.ControlPlanes + o.Workers
	for i := 1; i <= total; i++ {
		name, typ := fmt.Sprintf("cp%d", i), mtype.TypeControlPlane
		if i > o.ControlPlanes {
			name, typ = fmt.Sprintf("w%d", i-o.ControlPlanes), mtype.TypeWorker
		}
		mac := fmt.Sprintf("52:54:00:ee:%02x:%02x", b%256, i)
		maint := fmt.Sprintf("%s.%d", o.Base, i)
		addr := fmt.Sprintf("%s.%d", cfgBase, i)
		n, err := Start(Options{Name: name, MaintenanceAddr: maint, Port: o.Port, Group: cl.Group, RebootDelay: o.RebootDelay,
			Kubeconfig: o.Kubeconfig, Inventory: DefaultInventory("talos-"+name, mac)})
		if err != nil {
			return nil, err
		}
		cl.Nodes = append(cl.Nodes, n)
		cl.Addresses[name] = addr
		data, err := cl.NodeConfig(typ, name, mac, addr)
		if err != nil {
			return nil, err
		}
		if err := applyInsecure(ctx, net.JoinHostPort(maint, strconv.Itoa(o.Port)), data); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	for _, n := range cl.Nodes {
		if err := cl.WaitRunning(ctx, n.Name()); err != nil {
			return nil, err
		}
	}
	c, err := cl.Client(ctx, "cp1")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); err != nil {
		return nil, fmt.Errorf("bootstrapping etcd: %w", err)
	}
	for {
		healthy := 0
		for _, m := range cl.Group.EtcdMembers() {
			if m.Healthy {
				healthy++
			}
		}
		if healthy == o.ControlPlanes {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d etcd members: %d healthy", o.ControlPlanes, healthy)
		case <-time.After(5 * time.Millisecond):
		}
	}
	ok = true
	return cl, nil
}

// applyInsecure applies a config through the maintenance API.
func applyInsecure(ctx context.Context, endpoint string, data []byte) error {
	c, err := client.New(ctx, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(endpoint)) //nolint:gosec // maintenance mode
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: data, Mode: machineapi.ApplyConfigurationRequest_REBOOT})
	return err
}

// Client returns an authenticated client for a node's configured address.
func (c *Cluster) Client(ctx context.Context, name string) (*client.Client, error) {
	return client.New(ctx, client.WithConfig(c.Talosconfig), client.WithEndpoints(net.JoinHostPort(c.Addresses[name], strconv.Itoa(c.Port))))
}

// WaitRunning waits until a node answers the authenticated API.
func (c *Cluster) WaitRunning(ctx context.Context, name string) error {
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	for n.Phase() != "running" {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not running (phase %s)", name, n.Phase())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
