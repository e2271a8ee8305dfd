package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	ifconstants "github.com/siderolabs/image-factory/pkg/constants"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Facts is what a node runs, read from its Talos resources.
type Facts struct {
	TalosVersion string
	// Schematic is the Image Factory schematic ID of the running image
	// ("" for an image not built by the factory).
	Schematic string
	// Extensions the node runs, as official names (siderolabs/drbd).
	Extensions []string
	// Config is the active machine config (MachineConfig v1alpha1).
	Config config.Provider
}

// ReadFacts reads the running version, extensions and machine config.
func ReadFacts(ctx context.Context, c *client.Client) (*Facts, error) {
	f := &Facts{}
	var err error
	if f.TalosVersion, err = talos.Version(ctx, c.COSI); err != nil {
		return nil, err
	}
	f.Schematic, f.Extensions, err = Extensions(ctx, c)
	if err != nil {
		return nil, err
	}
	mc, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if err != nil {
		return nil, fmt.Errorf("reading the running machine config: %w", err)
	}
	f.Config = mc.Provider()
	return f, nil
}

// Extensions reads the node's ExtensionStatus resources: the schematic ID
// (the Image Factory's "schematic" pseudo-extension) and the official
// names of the extensions (siderolabs/<manifest name>).
func Extensions(ctx context.Context, c *client.Client) (schematicID string, names []string, err error) {
	l, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return "", nil, fmt.Errorf("reading extensions: %w", err)
	}
	for e := range l.All() {
		md := e.TypedSpec().Metadata
		switch md.Name {
		case ifconstants.SchematicIDExtensionName:
			schematicID = md.Version
		case "modules.dep", "":
			// Talos' generated module index, not an extension.
		default:
			names = append(names, "siderolabs/"+md.Name)
		}
	}
	slices.Sort(names)
	return schematicID, names, nil
}

// Stage is a step of a node's rollout, each with its own desired config.
type Stage int

const (
	// StageNode is the machine config and OS image; Kubernetes component
	// images stay as they run.
	StageNode Stage = iota
	// StageControlPlane adds the new control-plane component images
	// (control-plane nodes); the kubelet stays.
	StageControlPlane
	// StageKubelet is the whole config of the file.
	StageKubelet
)

// k8sImages are the Kubernetes component images of a machine config.
type k8sImages struct{ kubelet, apiServer, controllerManager, scheduler, proxy string }

func imagesOf(c *v1alpha1.Config) k8sImages {
	var im k8sImages
	if m := c.MachineConfig; m != nil && m.MachineKubelet != nil {
		im.kubelet = m.MachineKubelet.KubeletImage
	}
	if cl := c.ClusterConfig; cl != nil {
		if cl.APIServerConfig != nil {
			im.apiServer = cl.APIServerConfig.ContainerImage
		}
		if cl.ControllerManagerConfig != nil {
			im.controllerManager = cl.ControllerManagerConfig.ContainerImage
		}
		if cl.SchedulerConfig != nil {
			im.scheduler = cl.SchedulerConfig.ContainerImage
		}
		if cl.ProxyConfig != nil {
			im.proxy = cl.ProxyConfig.ContainerImage
		}
	}
	return im
}

func setKubelet(c *v1alpha1.Config, image string) {
	if c.MachineConfig == nil {
		return
	}
	if c.MachineConfig.MachineKubelet == nil {
		c.MachineConfig.MachineKubelet = &v1alpha1.KubeletConfig{}
	}
	c.MachineConfig.MachineKubelet.KubeletImage = image
}

func setControlPlane(c *v1alpha1.Config, im k8sImages) {
	cl := c.ClusterConfig
	if cl == nil {
		return
	}
	if cl.APIServerConfig != nil {
		cl.APIServerConfig.ContainerImage = im.apiServer
	}
	if cl.ControllerManagerConfig != nil {
		cl.ControllerManagerConfig.ContainerImage = im.controllerManager
	}
	if cl.SchedulerConfig != nil {
		cl.SchedulerConfig.ContainerImage = im.scheduler
	}
	if cl.ProxyConfig != nil {
		cl.ProxyConfig.ContainerImage = im.proxy
	}
}

// ImageTag returns the tag of an image reference ("" without one).
func ImageTag(ref string) string {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ""
	}
	return ref[i+1:]
}

// Desired renders the config the file wants on the node for a stage, with
// the contract of the Talos version the node runs and its install disk
// (resolved by bootstrap, as in the running config) when the file selects
// the disk by properties.
func Desired(r *machineconfig.Renderer, node *cluster.Node, f *Facts, stage Stage) (config.Provider, error) {
	rendered, err := renderNode(r, node, f)
	if err != nil {
		return nil, err
	}
	return forStage(rendered, f, stage)
}

// renderNode is Desired's rendering, the same for every stage: a plan renders
// each node once for the release it runs and derives the stages with
// forStage.
func renderNode(r *machineconfig.Renderer, node *cluster.Node, f *Facts) (config.Provider, error) {
	opts := machineconfig.NodeOptions{TalosVersion: f.TalosVersion}
	if node.InstallDisk.Path == "" && f.Config != nil && f.Config.Machine() != nil {
		opts.InstallDisk = f.Config.Machine().Install().Disk()
	}
	b, err := r.NodeConfigFor(node.Name, opts)
	if err != nil {
		return nil, err
	}
	want, err := configloader.NewFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("loading rendered config of %s: %w", node.Name, err)
	}
	return want, nil
}

// forStage is the config of a stage from renderNode's result, which it leaves
// unchanged (StageKubelet: that config itself).
func forStage(want config.Provider, f *Facts, stage Stage) (config.Provider, error) {
	if stage == StageKubelet || f.Config == nil || f.Config.RawV1Alpha1() == nil {
		return want, nil
	}
	want = want.Clone()
	raw := want.RawV1Alpha1()
	if raw == nil {
		return nil, errors.New("rendered config has no v1alpha1 document")
	}
	running := imagesOf(f.Config.RawV1Alpha1())
	setKubelet(raw, running.kubelet)
	if stage == StageNode {
		setControlPlane(raw, running)
	}
	return want, nil
}

// Encode is the canonical form configs are compared in.
func Encode(c config.Provider) ([]byte, error) {
	return c.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
}

// Equal reports whether two configs are the same.
func Equal(a, b config.Provider) (bool, error) {
	ab, err := Encode(a)
	if err != nil {
		return false, err
	}
	bb, err := Encode(b)
	if err != nil {
		return false, err
	}
	return string(ab) == string(bb), nil
}

// RedactedDiff is a unified diff of two configs with their secrets
// replaced; secretsChanged reports a difference hidden by the redaction.
func RedactedDiff(running, want config.Provider) (diff string, secretsChanged bool, err error) {
	diff, err = configdiff.DiffConfigs(running.RedactSecrets("REDACTED"), want.RedactSecrets("REDACTED"))
	if err != nil {
		return "", false, fmt.Errorf("diffing configs: %w", err)
	}
	if rest, ok := strings.CutPrefix(diff, "--- a\n+++ b\n"); ok {
		diff = "--- running\n+++ cluster.yaml\n" + rest
	}
	eq, err := Equal(running, want)
	if err != nil {
		return "", false, err
	}
	return diff, !eq && diff == "", nil
}

// DryRun asks the node how it would apply cfg (mode AUTO): Talos' own
// answer, NO_REBOOT or REBOOT, and the first line of its summary.
func DryRun(ctx context.Context, c *client.Client, cfg config.Provider) (machine.ApplyConfigurationRequest_Mode, string, error) {
	b, err := Encode(cfg)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: b, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
	if err != nil {
		return 0, "", fmt.Errorf("dry run: %w", err)
	}
	if len(resp.GetMessages()) == 0 {
		return 0, "", errors.New("dry run: empty answer")
	}
	m := resp.GetMessages()[0]
	// "Dry run summary:\n<what> (skipped in dry-run).\nConfig diff: …":
	// only the second line; the diff is Talos' own and not redacted.
	lines := strings.SplitN(m.GetModeDetails(), "\n", 3)
	answer := ""
	if len(lines) >= 2 {
		answer = strings.TrimSuffix(strings.TrimSpace(lines[1]), " (skipped in dry-run).")
	}
	return m.GetMode(), answer, nil
}

// NewForm compares now, the config the node gets rendered for the release
// it runs (Desired, any stage), with the one for the release an upgrade
// takes it to: nil when they are the same, else the document kinds added
// and removed.
func NewForm(r *machineconfig.Renderer, node *cluster.Node, f *Facts, now config.Provider, to string) (*FormChange, error) {
	if to == f.TalosVersion {
		return nil, nil
	}
	after := *f
	after.TalosVersion = to
	next, err := Desired(r, node, &after, StageNode)
	if err != nil {
		return nil, err
	}
	if now, err = forStage(now, f, StageNode); err != nil {
		return nil, err
	}
	if eq, err := Equal(now, next); err != nil || eq {
		return nil, err
	}
	kinds := func(c config.Provider) []string {
		var out []string
		for _, d := range c.Documents() {
			if k := d.Kind(); k != "" && k != "v1alpha1" && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	a, b := kinds(now), kinds(next)
	fc := &FormChange{}
	for _, k := range b {
		if !slices.Contains(a, k) {
			fc.AddDocuments = append(fc.AddDocuments, k)
		}
	}
	for _, k := range a {
		if !slices.Contains(b, k) {
			fc.RemoveDocuments = append(fc.RemoveDocuments, k)
		}
	}
	return fc, nil
}

// ModeName is the plan's word for an apply mode.
func ModeName(m machine.ApplyConfigurationRequest_Mode) string {
	switch m {
	case machine.ApplyConfigurationRequest_NO_REBOOT, machine.ApplyConfigurationRequest_TRY:
		return "no reboot"
	case machine.ApplyConfigurationRequest_STAGED:
		return "staged"
	default:
		return "reboot"
	}
}
