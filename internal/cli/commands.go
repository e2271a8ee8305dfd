package cli

import (
	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// This file is the one list of what dodai's command line is made of: its
// commands, the steps of `dodai render`, the sections of `dodai status` and
// the checks only `dodai validate` runs.
// A new command, render step or status section is added here, in the order
// it should run or print; its code lives in a file of its own.

// commands are dodai's subcommands (help lists them by name).
func commands(g *Globals) []*cobra.Command {
	return []*cobra.Command{
		newInitCmd(g),
		newValidateCmd(g),
		newSchemaCmd(g),
		newConfigCmd(g),
		newImageCmd(g),
		newRenderCmd(g),
		newNetbootCmd(g),
		newDiscoverCmd(g),
		newBootstrapCmd(g),
		newKubeconfigCmd(g),
		newPlatformCmd(g),
		newStatusCmd(g),
		newPowerCmd(g),
		newLabCmd(g),
		newPivotCmd(g),
		newControllerCmd(g),
		newHealthCmd(g),
		newEtcdCmd(g),
		newNodeCmd(g),
	}
}

// renderSteps are the parts of `dodai render`, in the order they run.
var renderSteps = []RenderStep{
	{Name: "machine configs", Run: renderMachineConfigs},
	{Name: "image", Run: renderImage},
	{Name: "netboot plan", Run: renderNetbootPlan},
	{Name: "platform", Run: renderPlatform},
}

// statusSections are the parts of `dodai status`, in the order they print.
var statusSections = []StatusSection{
	{Name: "netboot", Run: statusNetboot},
	{Name: "nodes", Run: statusNodes},
	{Name: "components", Run: statusComponents},
}

// validateChecks run in `dodai validate` after every check of
// clusterdir.Open: checks of files that only some commands read, which the
// others must not fail on (e.g. BMC credentials, which netboot and
// bootstrap never need).
var validateChecks = []cluster.Check{
	bmcCredentialProblems, // bmc-credentials.yaml and DODAI_BMC_* for nodes with a bmc
}
