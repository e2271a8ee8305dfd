package phase

import (
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Every stage Talos knows maps to the phase of the same name, so tables
// read like talosctl's; a stage Talos adds later is Unknown, not a guess.
func TestFromMachineStage(t *testing.T) {
	for _, s := range runtime.MachineStageValues() {
		p := FromMachineStage(s)
		if string(p) != s.String() {
			t.Errorf("%v: %q", s, p)
		}
	}
	if FromMachineStage(runtime.MachineStage(250)) != Unknown {
		t.Error("an unknown stage is not Unknown")
	}
}

func TestHealthy(t *testing.T) {
	cases := []struct {
		stage Phase
		ready bool
		want  bool
	}{
		{Running, true, true},
		{Running, false, false},
		{Booting, true, false},
		{Maintenance, true, false},
		{Applied, true, false},
	}
	for _, c := range cases {
		if got := Healthy(c.stage, c.ready); got != c.want {
			t.Errorf("Healthy(%q, %v) = %v", c.stage, c.ready, got)
		}
	}
}
