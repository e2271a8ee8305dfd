package cli

import "github.com/spf13/cobra"

// This file is the one list of what dodai's command line is made of: its
// commands, the steps of `dodai render` and the sections of `dodai status`.
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
