package faketalos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/talosvalidate"
)

// configFor renders a worker config with machinery's generator for the
// version contract of a Talos release (1.12+ adds a HostnameConfig
// document, 1.11 has none).
func configFor(t *testing.T, release string) []byte {
	t.Helper()
	contract, err := config.ParseContractFromVersion(release)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := secrets.NewBundle(secrets.NewClock(), contract)
	if err != nil {
		t.Fatal(err)
	}
	in, err := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1",
		generate.WithSecretsBundle(bundle), generate.WithVersionContract(contract), generate.WithInstallDisk("/dev/nvme0n1"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := in.Config(mtype.TypeWorker)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVersionedNodes: a fake node reports the release it is given and
// accepts configs as that release does: a node of 1.11 refuses the
// documents 1.12 introduced, nodes of 1.12 and 1.13 take them.
func TestVersionedNodes(t *testing.T) {
	for _, v := range talosvalidate.External {
		if err := talosvalidate.Available(v + ".0"); err != nil {
			if testing.Short() {
				t.Skip(err)
			}
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 150 + os.Getpid()%50
	newer := configFor(t, "v1.13.9")
	if !strings.Contains(string(newer), "kind: HostnameConfig") {
		t.Fatalf("a 1.13 config has a HostnameConfig document:\n%s", newer)
	}
	for i, tc := range []struct {
		release     string
		acceptNewer bool
	}{
		{"v1.11.6", false},
		{"v1.12.7", true},
		{"v1.13.9", true},
	} {
		t.Run(tc.release, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.%d.%d", base, 10+i)
			inv := DefaultInventory("talos-"+tc.release, fmt.Sprintf("52:54:00:00:01:%02x", i))
			inv.TalosVersion = tc.release
			n, err := Start(Options{Name: tc.release, MaintenanceAddr: addr, Port: port, Inventory: inv, RebootDelay: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			mc, err := talos.Maintenance(ctx, talos.Endpoint(addr, port))
			if err != nil {
				t.Fatal(err)
			}
			defer mc.Close()
			m, err := talos.ReadMachine(ctx, mc, addr)
			if err != nil {
				t.Fatal(err)
			}
			if m.TalosVersion != tc.release {
				t.Errorf("reports Talos %q, want %q", m.TalosVersion, tc.release)
			}
			dry := func(data []byte) error {
				_, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
				return err
			}
			if err := dry(configFor(t, tc.release)); err != nil {
				t.Errorf("its own release's config: %v", err)
			}
			err = dry(newer)
			if tc.acceptNewer && err != nil {
				t.Errorf("1.13 config: %v", err)
			}
			if !tc.acceptNewer {
				// 1.11's loader stops at the first thing it does not know: a
				// field (machine.install.grubUseUKICmdline) or a document
				// (HostnameConfig).
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "machinery "+tc.release+" rejects it") ||
					(!strings.Contains(err.Error(), "unknown keys") && !strings.Contains(err.Error(), "HostnameConfig")) {
					t.Errorf("1.13 config on a %s node: %v, want InvalidArgument from that release's machinery", tc.release, err)
				}
			}
		})
	}
}

// withoutHostnameConfig returns cfg without its HostnameConfig document.
func withoutHostnameConfig(cfg config.Provider) (config.Provider, error) {
	var docs []configconfig.Document
	for _, d := range cfg.Documents() {
		if d.Kind() != network.HostnameKind {
			docs = append(docs, d)
		}
	}
	return container.New(docs...)
}

// TestMissingValidator: a fake node of a release with a validator program
// refuses to start without it rather than accept everything.
func TestMissingValidator(t *testing.T) {
	t.Setenv(talosvalidate.ToolsEnvVar, t.TempDir())
	inv := DefaultInventory("talos-old", "52:54:00:00:02:01")
	inv.TalosVersion = "v1.11.6"
	_, err := Start(Options{Name: "old", MaintenanceAddr: "127.0.0.1", Port: testutil.FreePort(t), Inventory: inv})
	if err == nil || !strings.Contains(err.Error(), "hack/deps/talos.sh") {
		t.Fatalf("want an error naming hack/deps/talos.sh, got %v", err)
	}
}
