package faketalos

import (
	"context"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/dodai-dev/dodai/test/fakekubelet"
)

// kubeletConfig is what the node's kubelet reports for a machine config:
// the Node named by the hostname, the kubelet version from the kubelet
// image tag, and on control planes the static pods of the config's
// component images.
func (n *Node) kubeletConfig(cfg config.Provider, addr string) fakekubelet.Config {
	// Since Talos 1.12 the hostname may sit in a HostnameConfig document;
	// NetworkHostnameConfig reads it from there or from v1alpha1.
	var name string
	if hc := cfg.NetworkHostnameConfig(); hc != nil {
		name = hc.Hostname()
	}
	if name == "" {
		name = n.opts.Inventory.Hostname
	}
	kc := fakekubelet.Config{
		Client:         n.opts.Kube,
		NodeName:       name,
		KubeletVersion: imageTag(cfg.Machine().Kubelet().Image()),
		OSImage:        "Talos (" + n.TalosVersion() + ")",
		Address:        addr,
		ControlPlane:   cfg.Machine().Type() != mtype.TypeWorker,
	}
	if kc.ControlPlane {
		c := cfg.Cluster()
		kc.StaticPods = []fakekubelet.StaticPod{
			{Name: "kube-apiserver", Image: c.APIServer().Image()},
			{Name: "kube-controller-manager", Image: c.ControllerManager().Image()},
			{Name: "kube-scheduler", Image: c.Scheduler().Image()},
		}
	}
	return kc
}

func imageTag(ref string) string {
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		return ref[i+1:]
	}
	return ""
}

// startKubelet registers the node in Kubernetes (Options.Kube) once it
// runs; failures are kept in Errors (the Node then never becomes Ready).
func (n *Node) startKubelet(cfg config.Provider) {
	if n.opts.Kube == nil {
		return
	}
	n.mu.Lock()
	addr := n.addr
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	k, err := fakekubelet.Start(ctx, n.kubeletConfig(cfg, addr))
	if err != nil {
		n.fail("kubelet: %v", err)
		return
	}
	n.mu.Lock()
	old := n.day2.kubelet
	n.day2.kubelet = k
	closed := n.closed
	n.mu.Unlock()
	if old != nil {
		_ = old.Stop(context.Background(), false)
	}
	if closed {
		_ = k.Stop(context.Background(), false)
	}
}

// stopKubelet stops the kubelet; with notReady the Node goes NotReady (the
// machine is going down).
func (n *Node) stopKubelet(notReady bool) {
	n.mu.Lock()
	k := n.day2.kubelet
	n.day2.kubelet = nil
	n.mu.Unlock()
	if k == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.Stop(ctx, notReady); err != nil && notReady {
		n.fail("kubelet stop: %v", err)
	}
}

// restartKubelet restarts the kubelet with a live-applied config (Talos
// restarts it when its settings or the component images change).
func (n *Node) restartKubelet(cfg config.Provider) {
	if n.opts.Kube == nil {
		return
	}
	n.stopKubelet(false)
	n.startKubelet(cfg)
}
