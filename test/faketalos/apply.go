package faketalos

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// installedMetal is the validation mode of an installed metal node: the
// install section is no longer required (Talos' modeWrapper).
type installedMetal struct{ metalMode }

func (installedMetal) RequiresInstall() bool { return false }

// ApplyConfiguration on a configured node follows Talos' machined server:
// AUTO picks NO_REBOOT when the change can be applied immediately, else
// REBOOT; NO_REBOOT and TRY refuse a change that needs a reboot; STAGED
// keeps the config for the next reboot; a dry run answers with the mode and
// the config diff without changing anything.
func (s *runningService) ApplyConfiguration(ctx context.Context, in *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n := s.n
	call := Call{Method: "ApplyConfiguration", Phase: "running", Mode: in.Mode.String(), DryRun: in.DryRun}
	fail := func(err error) (*machine.ApplyConfigurationResponse, error) {
		call.Code = status.Code(err)
		n.record(call)
		return nil, err
	}
	cfg, err := configloader.NewFromBytes(in.GetData())
	if err != nil {
		return fail(status.Error(codes.InvalidArgument, err.Error()))
	}
	if cfg.RawV1Alpha1() == nil {
		return fail(status.Error(codes.InvalidArgument, "the applied machine configuration doesn't contain v1alpha1 config, did you mean to patch the machine config instead?"))
	}
	// The node's own release loads it (test/talosvalidate for the older
	// ones): a 1.11 node refuses the documents 1.12 introduced.
	if err := n.acceptConfig(ctx, in.GetData()); err != nil {
		return fail(err)
	}
	warnings, err := cfg.Validate(installedMetal{})
	if err != nil {
		return fail(status.Error(codes.InvalidArgument, err.Error()))
	}
	n.mu.Lock()
	current := n.cfg
	n.mu.Unlock()

	mode := in.Mode
	details := "Applied configuration with a reboot"
	modeErr := ""
	switch in.Mode {
	case machine.ApplyConfigurationRequest_TRY, machine.ApplyConfigurationRequest_NO_REBOOT:
		if err := canApplyImmediate(current, cfg); err != nil {
			return fail(status.Error(codes.InvalidArgument, err.Error()))
		}
		details = "Applied configuration without a reboot"
	case machine.ApplyConfigurationRequest_STAGED:
		details = "Staged configuration to be applied after the next reboot"
	case machine.ApplyConfigurationRequest_AUTO:
		if err := canApplyImmediate(current, cfg); err != nil {
			mode = machine.ApplyConfigurationRequest_REBOOT
			modeErr = ": " + err.Error()
		} else {
			mode = machine.ApplyConfigurationRequest_NO_REBOOT
			details = "Applied configuration without a reboot"
		}
		call.Mode = fmt.Sprintf("%s(%s)", in.Mode, mode)
	case machine.ApplyConfigurationRequest_REBOOT:
	default:
		return fail(fmt.Errorf("incorrect mode '%s' specified for the apply config call", in.Mode.String()))
	}

	if in.DryRun {
		diff, err := configdiff.DiffConfigs(current, cfg)
		if err != nil {
			return fail(fmt.Errorf("failed to generate diff: %w", err))
		}
		if diff == "" {
			diff = "No changes."
		}
		n.record(call)
		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode:        mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\nConfig diff:\n\n%s", details, diff),
		}}}, nil
	}
	if f := n.faults(); f.ApplyError != "" {
		return fail(status.Error(codes.Internal, f.ApplyError))
	}
	n.mu.Lock()
	n.applied = append(n.applied, slices.Clone(in.Data))
	n.mu.Unlock()
	n.record(call)

	switch mode {
	case machine.ApplyConfigurationRequest_NO_REBOOT, machine.ApplyConfigurationRequest_TRY:
		if err := n.applyLive(ctx, cfg); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	case machine.ApplyConfigurationRequest_STAGED:
		n.mu.Lock()
		n.day2.staged = cfg
		n.mu.Unlock()
	case machine.ApplyConfigurationRequest_REBOOT:
		n.mu.Lock()
		n.day2.staged = cfg
		n.mu.Unlock()
		n.rebootRunning(nil)
	}
	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode:        mode,
		Warnings:    warnings,
		ModeDetails: details + modeErr,
	}}}, nil
}

// canApplyImmediate mirrors Talos' runtime CanApplyImmediate (v1.11): the
// change may only touch the sections Talos reconfigures live.
func canApplyImmediate(current, next config.Provider) error {
	if current == nil || current.RawV1Alpha1() == nil {
		return fmt.Errorf("no current config")
	}
	cur := current.RawV1Alpha1()
	nc := next.RawV1Alpha1()
	if nc == nil {
		return fmt.Errorf("new config is not v1alpha1")
	}
	nc = nc.DeepCopy()
	nc.ConfigDebug = cur.ConfigDebug
	nc.ClusterConfig = cur.ClusterConfig
	if nc.MachineConfig != nil && cur.MachineConfig != nil {
		m, c := nc.MachineConfig, cur.MachineConfig
		m.MachineCA, m.MachineAcceptedCAs, m.MachineTime, m.MachineCertSANs = c.MachineCA, c.MachineAcceptedCAs, c.MachineTime, c.MachineCertSANs
		m.MachineInstall, m.MachineNetwork, m.MachineSysfs, m.MachineSysctls = c.MachineInstall, c.MachineNetwork, c.MachineSysfs, c.MachineSysctls
		m.MachineLogging, m.MachineControlPlane, m.MachineKubelet, m.MachineKernel = c.MachineLogging, c.MachineControlPlane, c.MachineKubelet, c.MachineKernel
		m.MachineRegistries, m.MachinePods, m.MachineSeccompProfiles = c.MachineRegistries, c.MachinePods, c.MachineSeccompProfiles
		m.MachineNodeAnnotations, m.MachineNodeLabels, m.MachineNodeTaints = c.MachineNodeAnnotations, c.MachineNodeLabels, c.MachineNodeTaints
		if m.MachineFeatures != nil && c.MachineFeatures != nil {
			f, cf := m.MachineFeatures, c.MachineFeatures
			f.KubernetesTalosAPIAccessConfig, f.KubePrismSupport, f.HostDNSSupport = cf.KubernetesTalosAPIAccessConfig, cf.KubePrismSupport, cf.HostDNSSupport
			f.ImageCacheSupport, f.FeatureNodeAddressSortAlgorithm = cf.ImageCacheSupport, cf.FeatureNodeAddressSortAlgorithm
		}
	}
	if reflect.DeepEqual(cur, nc) {
		return nil
	}
	diff, err := configdiff.DiffConfigs(container.NewV1Alpha1(cur), container.NewV1Alpha1(nc))
	if err != nil {
		return fmt.Errorf("error calculating diff: %w", err)
	}
	return fmt.Errorf("this config change can't be applied in immediate mode\ndiff:\n%s", diff)
}
