package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/drain"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/poll"
)

func (r *runner) addr(n *cluster.Node) string { return plan.NodeAddress(n, r.bst) }

// connect opens a fresh client for each use: after a reboot an old
// connection would sit in gRPC's reconnect backoff.
func (r *runner) connect(ctx context.Context, n *cluster.Node) (*client.Client, error) {
	return plan.Connect(ctx, r.o.Talosconfig, r.addr(n), r.o.Port)
}

// facts reads what a node runs now, with its boot ID.
func (r *runner) facts(ctx context.Context, n *cluster.Node) (*plan.Facts, string, error) {
	c, err := r.connect(ctx, n)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	boot, err := bootID(cctx, c)
	if err != nil {
		return nil, "", err
	}
	f, err := plan.ReadFacts(cctx, c)
	if err != nil {
		return nil, "", err
	}
	return f, boot, nil
}

// bootID reads /proc/sys/kernel/random/boot_id (what talosctl reads to
// follow a reboot).
func bootID(ctx context.Context, c *client.Client) (string, error) {
	rd, err := c.Read(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot ID: %w", err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return "", fmt.Errorf("reading the boot ID: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func short(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

// nodeStage brings one node's machine config (without Kubernetes version
// changes) and Talos image to what the file says.
func (r *runner) nodeStage(ctx context.Context, n *cluster.Node) error {
	name := n.Name
	// An operation an earlier run started: wait for it first.
	if in := r.store.node(name).Inflight; in != nil {
		if err := r.step(name, StepReboot, func() (string, error) {
			f, err := r.waitBack(ctx, n, in.BootID)
			if err != nil {
				return "", err
			}
			if in.Step == StepUpgrade && f.TalosVersion != in.ToVersion {
				_ = r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
				return "", rollbackError(f, in.FromVersion, in.ToVersion, in.Image)
			}
			return "resumed " + in.Step, r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
		}); err != nil {
			return err
		}
	}
	f, boot, err := r.facts(ctx, n)
	if err != nil {
		return &StepError{Node: name, Step: StepConfig, Err: err}
	}
	want, err := plan.Desired(r.o.Renderer, n, f, plan.StageNode)
	if err != nil {
		return &StepError{Node: name, Step: StepConfig, Err: err}
	}
	same, err := plan.Equal(f.Config, want)
	if err != nil {
		return &StepError{Node: name, Step: StepConfig, Err: err}
	}
	up, refusals, _ := r.target.UpgradeFor(f)
	if len(refusals) > 0 {
		return &StepError{Node: name, Step: StepUpgrade, Err: errors.New(strings.Join(refusals, "; "))}
	}
	cordoned := r.store.node(name).Cordoned
	if same && up == nil && !cordoned {
		return nil
	}
	mode := machine.ApplyConfigurationRequest_NO_REBOOT
	if !same {
		c, err := r.connect(ctx, n)
		if err != nil {
			return &StepError{Node: name, Step: StepConfig, Err: err}
		}
		mode, _, err = plan.DryRun(ctx, c, want)
		c.Close()
		if err != nil {
			return &StepError{Node: name, Step: StepConfig, Err: errors.New(short(errors.Unwrap(err)))}
		}
	}
	disruptive := up != nil || mode == machine.ApplyConfigurationRequest_REBOOT
	if disruptive && n.Role == cluster.RoleControlPlane {
		if err := r.beforeControlPlane(ctx, name); err != nil {
			return err
		}
	}
	if disruptive {
		if err := r.drain(ctx, name); err != nil {
			return err
		}
	}
	if !same {
		applyMode := machine.ApplyConfigurationRequest_AUTO
		if up != nil && mode == machine.ApplyConfigurationRequest_REBOOT {
			// The upgrade's reboot applies it: one reboot instead of two.
			applyMode = machine.ApplyConfigurationRequest_STAGED
		}
		if f, boot, err = r.applyConfig(ctx, n, want, applyMode, f, boot); err != nil {
			return err
		}
	}
	if up != nil {
		if f, err = r.upgrade(ctx, n, up, boot); err != nil {
			return err
		}
		// The new version may render the config differently (its contract).
		want, err = plan.Desired(r.o.Renderer, n, f, plan.StageNode)
		if err != nil {
			return &StepError{Node: name, Step: StepConfig, Err: err}
		}
		if same, err := plan.Equal(f.Config, want); err != nil {
			return &StepError{Node: name, Step: StepConfig, Err: err}
		} else if !same {
			_, boot, err = r.facts(ctx, n)
			if err != nil {
				return &StepError{Node: name, Step: StepConfig, Err: err}
			}
			if f, _, err = r.applyConfig(ctx, n, want, machine.ApplyConfigurationRequest_AUTO, f, boot); err != nil {
				return err
			}
		}
	}
	if err := r.waitReady(ctx, name, plan.ImageTag(f.Config.Machine().Kubelet().Image())); err != nil {
		return err
	}
	if err := r.uncordon(ctx, name); err != nil {
		return err
	}
	return r.store.updateNode(name, func(s *NodeState) {
		if s.Done == nil {
			s.Done = map[string]time.Time{}
		}
		s.Done[stageNode] = now()
	})
}

// applyConfig applies cfg and, when Talos reboots for it, waits for the
// node to come back. It returns the node's facts afterwards (before, the
// facts read in boot, when Talos only staged it).
func (r *runner) applyConfig(ctx context.Context, n *cluster.Node, cfg config.Provider, mode machine.ApplyConfigurationRequest_Mode, before *plan.Facts, boot string) (*plan.Facts, string, error) {
	name := n.Name
	var applied machine.ApplyConfigurationRequest_Mode
	if err := r.step(name, StepConfig, func() (string, error) {
		data, err := plan.Encode(cfg)
		if err != nil {
			return "", err
		}
		c, err := r.connect(ctx, n)
		if err != nil {
			return "", err
		}
		defer c.Close()
		if err := r.store.updateNode(name, func(s *NodeState) {
			s.Inflight = &Inflight{Step: StepConfig, BootID: boot, At: now()}
		}); err != nil {
			return "", err
		}
		resp, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data, Mode: mode})
		if err != nil {
			_ = r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
			return "", fmt.Errorf("Talos refused the config: %s", short(err))
		}
		if len(resp.GetMessages()) > 0 {
			applied = resp.GetMessages()[0].GetMode()
		}
		if applied != machine.ApplyConfigurationRequest_REBOOT {
			if err := r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil }); err != nil {
				return "", err
			}
		}
		return plan.ModeName(applied), nil
	}); err != nil {
		return nil, "", err
	}
	if applied == machine.ApplyConfigurationRequest_REBOOT {
		if err := r.step(name, StepReboot, func() (string, error) {
			if _, err := r.waitBack(ctx, n, boot); err != nil {
				return "", err
			}
			return "", r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
		}); err != nil {
			return nil, "", err
		}
	}
	if applied == machine.ApplyConfigurationRequest_STAGED {
		// Nothing changed on the node until the next boot: the facts and
		// the boot are the ones read before.
		return before, boot, nil
	}
	f, newBoot, err := r.facts(ctx, n)
	if err != nil {
		return nil, "", &StepError{Node: name, Step: StepConfig, Err: err}
	}
	if ok, err := plan.Equal(f.Config, cfg); err != nil || !ok {
		return nil, "", &StepError{Node: name, Step: StepConfig, Err: errors.New("the node does not run the applied config")}
	}
	return f, newBoot, nil
}

// upgrade runs the Talos upgrade (startUpgrade: the API of the node's
// release) and checks what the node runs afterwards.
func (r *runner) upgrade(ctx context.Context, n *cluster.Node, up *plan.Upgrade, boot string) (*plan.Facts, error) {
	name := n.Name
	if err := r.step(name, StepUpgrade, func() (string, error) {
		c, err := r.connect(ctx, n)
		if err != nil {
			return "", err
		}
		defer c.Close()
		record := func() error {
			return r.store.updateNode(name, func(s *NodeState) {
				s.Inflight = &Inflight{Step: StepUpgrade, BootID: boot, Image: up.Image, FromVersion: up.FromVersion, ToVersion: up.ToVersion, At: now()}
			})
		}
		if err := startUpgrade(ctx, c, up, record); err != nil {
			_ = r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
			return "", err
		}
		return up.Image + " (" + plan.UpgradeAPI(up.FromVersion) + ")", nil
	}); err != nil {
		return nil, err
	}
	var f *plan.Facts
	err := r.step(name, StepUpgradeWait, func() (string, error) {
		var err error
		if f, err = r.waitBack(ctx, n, boot); err != nil {
			return "", err
		}
		_ = r.store.updateNode(name, func(s *NodeState) { s.Inflight = nil })
		if f.TalosVersion != up.ToVersion {
			return "", rollbackError(f, up.FromVersion, up.ToVersion, up.Image)
		}
		if up.ToSchematic != "" && f.Schematic != up.ToSchematic {
			return "", fmt.Errorf("the node runs schematic %s after the upgrade to %s, expected %s", orNone(f.Schematic), up.Image, up.ToSchematic)
		}
		want := up.Extensions
		if want == nil {
			// A custom installer: at least what the file lists.
			want = r.target.Extensions
		}
		var missing, extra []string
		for _, e := range want {
			if !slices.Contains(f.Extensions, e) {
				missing = append(missing, e)
			}
		}
		if up.Extensions != nil {
			for _, e := range f.Extensions {
				if !slices.Contains(up.Extensions, e) {
					extra = append(extra, e)
				}
			}
		}
		if len(missing) > 0 || len(extra) > 0 {
			return "", fmt.Errorf("the node runs extensions [%s] after the upgrade, expected [%s] (missing: %s; unexpected: %s)",
				strings.Join(f.Extensions, " "), strings.Join(want, " "), orNone(strings.Join(missing, " ")), orNone(strings.Join(extra, " ")))
		}
		return f.TalosVersion, nil
	})
	return f, err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func rollbackError(f *plan.Facts, from, to, image string) error {
	if f.TalosVersion == from {
		return fmt.Errorf("Talos rolled back the upgrade: the node runs %s again after the upgrade to %s (%s did not boot; see the node's console or `talosctl dmesg`)", from, to, image)
	}
	return fmt.Errorf("the node runs Talos %s after the upgrade, expected %s", f.TalosVersion, to)
}

// waitBack waits until the node answers with a boot ID other than boot,
// and returns what it runs then.
func (r *runner) waitBack(ctx context.Context, n *cluster.Node, boot string) (*plan.Facts, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.NodeTimeout)
	defer cancel()
	last := "it still runs the same boot"
	start := time.Now()
	var facts *plan.Facts
	err := poll.Until(ctx, poll.Options{Interval: r.o.PollInterval}, func(ctx context.Context) (bool, error) {
		f, err := r.factsAfter(ctx, n, boot)
		if err != nil {
			last = short(err)
			return false, nil
		}
		facts = f
		return f != nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the node did not come back on %s within %s (last: %s)", r.addr(n), time.Since(start).Round(time.Second), last)
	}
	return facts, nil
}

// factsAfter reads the node's boot ID and, only when it is not boot (the
// node rebooted), what it runs; nil facts while it runs the same boot.
// Polls read the boot ID alone: the full facts are read once.
func (r *runner) factsAfter(ctx context.Context, n *cluster.Node, boot string) (*plan.Facts, error) {
	c, err := r.connect(ctx, n)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := bootID(cctx, c)
	if err != nil || b == boot {
		return nil, err
	}
	return plan.ReadFacts(cctx, c)
}

// drain cordons and drains the node, recording the cordon.
func (r *runner) drain(ctx context.Context, name string) error {
	return r.step(name, StepDrain, func() (string, error) {
		if err := r.store.updateNode(name, func(s *NodeState) { s.Cordoned = true }); err != nil {
			return "", err
		}
		res, err := drain.Drain(ctx, r.o.Kube, name, drain.Options{Timeout: r.o.DrainTimeout, Log: r.log})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d pods evicted", len(res.Evicted)), nil
	})
}

// uncordon makes a node dodai cordoned schedulable again.
func (r *runner) uncordon(ctx context.Context, name string) error {
	if !r.store.node(name).Cordoned {
		return nil
	}
	return r.step(name, StepUncordon, func() (string, error) {
		if err := drain.Uncordon(ctx, r.o.Kube, name); err != nil {
			return "", err
		}
		return "", r.store.updateNode(name, func(s *NodeState) { s.Cordoned = false })
	})
}

// controlPlaneStage switches a control-plane node to the file's
// control-plane component images (kubelet unchanged) and waits for the new
// static pods to run and be Ready.
func (r *runner) controlPlaneStage(ctx context.Context, n *cluster.Node) error {
	return r.kubernetesStage(ctx, n, plan.StageControlPlane, StepControlPlane, stageControlPlane)
}

// kubeletStage switches a node to the file's kubelet and waits for its
// Node to be Ready with that version.
func (r *runner) kubeletStage(ctx context.Context, n *cluster.Node) error {
	return r.kubernetesStage(ctx, n, plan.StageKubelet, StepKubelet, stageKubelet)
}

func (r *runner) kubernetesStage(ctx context.Context, n *cluster.Node, stage plan.Stage, stepName, doneName string) error {
	name := n.Name
	f, boot, err := r.facts(ctx, n)
	if err != nil {
		return &StepError{Node: name, Step: stepName, Err: err}
	}
	want, err := plan.Desired(r.o.Renderer, n, f, stage)
	if err != nil {
		return &StepError{Node: name, Step: stepName, Err: err}
	}
	if same, err := plan.Equal(f.Config, want); err != nil || same {
		if err != nil {
			return &StepError{Node: name, Step: stepName, Err: err}
		}
		return nil
	}
	if _, _, err := r.applyConfig(ctx, n, want, machine.ApplyConfigurationRequest_AUTO, f, boot); err != nil {
		return err
	}
	var wait error
	if stage == plan.StageControlPlane {
		wait = r.step(name, stepName, func() (string, error) { return r.waitStaticPods(ctx, name, want) })
	} else {
		wait = r.waitReady(ctx, name, plan.ImageTag(want.Machine().Kubelet().Image()))
	}
	if wait != nil {
		return wait
	}
	return r.store.updateNode(name, func(s *NodeState) {
		if s.Done == nil {
			s.Done = map[string]time.Time{}
		}
		s.Done[doneName] = now()
	})
}
