package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/lab"
)

// TestLabBootstrapPower: `dodai bootstrap --power --power-batch 1` powers
// both machines through their BMCs, one after the other (the second only
// once the first fetched its kernel), each booting from the network once,
// follows them through dodai netboot's stages until their Talos API port
// answers, and then goes on with the normal bootstrap path. The probe is
// no Talos, so that path ends in "not found in maintenance mode": the
// power phase is what this test proves.
func TestLabBootstrapPower(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir, st, nlog, _ := labWithNetboot(t, ctx, "--controlplanes", "1", "--workers", "1", "--firmware", "bios", "--probe", "--memory", "384", "--disk", "1", "--accel", "tcg")

	start := time.Now()
	out, err := dodai(t, ctx, st.Netns, "bootstrap", "--power", "--power-batch", "1", "--power-wait", "6m", "--timeout", "9m", "-C", dir, "--log-format", "json")
	took := time.Since(start)
	dump := func() string {
		var b strings.Builder
		for _, m := range st.Machines {
			b.WriteString("--- " + m.Name + " serial ---\n" + tail(read(lab.SerialLog(m.Dir)), 2000) + "\n")
		}
		b.WriteString("--- netboot ---\n" + tail(read(nlog), 3000) + "\n--- bootstrap ---\n" + tail(out, 6000))
		return b.String()
	}
	if err == nil {
		t.Fatalf("bootstrap of probe machines succeeded?\n%s", dump())
	}
	// The power table (tab-separated off a terminal): both powered with PXE
	// once, netbooted, port open.
	for _, m := range st.Machines {
		row := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, m.Name+"\t") && strings.Contains(l, "PXE once") {
				row = l
			}
		}
		// The port opens right after DHCP, before the config fetch.
		reached := strings.Contains(row, "\tkernel\t") || strings.Contains(row, "\tinitramfs\t") || strings.Contains(row, "\tconfig\t")
		if !strings.Contains(row, "was off: powered on, PXE once") || !reached || !strings.Contains(row, "\t"+m.Address+"\t") || !strings.HasSuffix(strings.TrimSpace(row), "\tok") {
			t.Fatalf("%s: power row %q\n%s", m.Name, row, dump())
		}
		if got := lab.Boots(m.Dir); !slices.Equal(got, []string{lab.BootPXE}) {
			t.Fatalf("%s boots %v, want [pxe]", m.Name, got)
		}
		// Then the normal path ran, and found no Talos.
		if !strings.Contains(out, "node "+m.Name+": machine with MAC "+m.MAC+" not found in maintenance mode") {
			t.Fatalf("%s: bootstrap did not go on to discovery\n%s", m.Name, dump())
		}
	}
	// Batch of 1: w1 was powered only after cp1 had fetched its kernel.
	var events []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct{ Msg, Node, Stage string }
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Msg {
		case "powered, network boot once":
			events = append(events, e.Node+" powered")
		case "netboot":
			events = append(events, e.Node+" "+e.Stage)
		}
	}
	w1 := slices.Index(events, "w1 powered")
	cp1 := slices.IndexFunc(events, func(s string) bool {
		return s == "cp1 kernel" || s == "cp1 initramfs" || s == "cp1 config"
	})
	if w1 < 0 || cp1 < 0 || w1 < cp1 || slices.Index(events, "cp1 powered") > cp1 {
		t.Fatalf("power and netboot order %v", events)
	}
	t.Logf("bootstrap --power --power-batch 1 of 2 BIOS machines: %s; events %v", took.Round(time.Second), events)
}
