package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/phase"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// NodeStatus is one line of `dodai status`' nodes section.
type NodeStatus struct {
	Name         string      `json:"name"`
	Role         string      `json:"role"`
	Address      string      `json:"address,omitempty"`
	TalosVersion string      `json:"talosVersion,omitempty"`
	Stage        phase.Phase `json:"stage"`
	Ready        bool        `json:"ready"`
	Error        string      `json:"error,omitempty"`
}

// nodeAddress is the configured address, else the one bootstrap recorded.
func nodeAddress(n *cluster.Node, st *state.Bootstrap) string {
	if ip := NodeIP(n); ip != "" {
		return ip
	}
	if s := st.Nodes[n.Name]; s != nil {
		return s.Address
	}
	return ""
}

// Statuses asks every node for its Talos version and stage over the
// authenticated API, in parallel. A node is healthy when
// phase.Healthy(Stage, Ready).
func Statuses(ctx context.Context, src *cluster.Source, tc *clientconfig.Config, port int) ([]NodeStatus, error) {
	st, err := state.ReadBootstrap(src.Layout().BootstrapState())
	if err != nil {
		return nil, err
	}
	nodes := src.Cluster.Spec.Nodes
	out := make([]NodeStatus, len(nodes))
	var wg sync.WaitGroup
	for i := range nodes {
		n := &nodes[i]
		out[i] = NodeStatus{Name: n.Name, Role: n.Role, Address: nodeAddress(n, st), Stage: phase.Unknown}
		if out[i].Address == "" {
			out[i].Stage = phase.NotInstalled
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			c, err := talos.Authenticated(ctx, tc, talos.Endpoint(out[i].Address, port))
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			defer c.Close()
			stage, ready, err := talos.MachineStatus(ctx, c.COSI)
			if err != nil {
				out[i].Stage = phase.Unreachable
				if s := st.Nodes[n.Name]; s == nil || s.Applied == nil {
					out[i].Stage = phase.NotInstalled
				}
				out[i].Error = shortErr(err)
				return
			}
			out[i].Stage, out[i].Ready = stage, ready
			if v, err := talos.Version(ctx, c.COSI); err == nil {
				out[i].TalosVersion = v
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// FetchKubeconfig asks the control-plane nodes, in file order, for the
// admin kubeconfig and writes DIR/kubeconfig (0600) when it changed. It
// returns the path and whether the file was (re)written.
func FetchKubeconfig(ctx context.Context, src *cluster.Source, tc *clientconfig.Config, port int) (string, bool, error) {
	st, err := state.ReadBootstrap(src.Layout().BootstrapState())
	if err != nil {
		return "", false, err
	}
	var errs []error
	for i := range src.Cluster.Spec.Nodes {
		n := &src.Cluster.Spec.Nodes[i]
		if n.Role != cluster.RoleControlPlane {
			continue
		}
		addr := nodeAddress(n, st)
		if addr == "" {
			errs = append(errs, fmt.Errorf("node %s: no known address", n.Name))
			continue
		}
		kc, err := func() ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := talos.Authenticated(ctx, tc, talos.Endpoint(addr, port))
			if err != nil {
				return nil, err
			}
			defer c.Close()
			return c.Kubeconfig(ctx)
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s (%s): %s", n.Name, addr, shortErr(err)))
			continue
		}
		written, err := WriteKubeconfig(src.Layout(), kc)
		if err != nil {
			return "", false, err
		}
		return src.Layout().Kubeconfig(), written, nil
	}
	if len(errs) == 0 {
		return "", false, errors.New("the cluster has no control-plane node")
	}
	return "", false, fmt.Errorf("no control-plane node gave a kubeconfig: %w", errors.Join(errs...))
}
