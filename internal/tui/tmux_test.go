package tui_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// tmuxSession drives a program in a real terminal.
type tmuxSession struct {
	t    *testing.T
	name string
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	// A private server (-L): nothing shared with other tmux users.
	out, err := exec.Command("tmux", append([]string{"-L", s.name}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", s.name) }

func (s *tmuxSession) waitFor(text string, d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(s.screen(), text) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("screen never showed %q:\n%s", text, s.screen())
}

// keys sends tmux key names (Enter, Down, C-u) or, prefixed with "=",
// literal text; then lets the UI redraw.
func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		if strings.HasPrefix(k, "=") {
			s.run("send-keys", "-t", s.name, "-l", k[1:])
		} else {
			s.run("send-keys", "-t", s.name, k)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

const clusterTmpl = `# Lab cluster: keep this comment
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  talosVersion: v1.11.5
  kubernetesVersion: v1.34.1
  endpoint: https://%[1]s.1:6443 # cp1
  nodes:
    # the first control plane, known already
    - name: cp1
      role: controlplane
      macs: ["52:54:00:bb:00:01"]
      address: %[1]s.1/8
      installDisk:
        selector: {type: nvme}
`

const wantTmpl = `# Lab cluster: keep this comment
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  talosVersion: v1.11.5
  kubernetesVersion: v1.34.1
  endpoint: https://%[1]s.1:6443 # cp1
  nodes:
    # the first control plane, known already
    - name: cp1
      role: controlplane
      macs: ["52:54:00:bb:00:01"]
      address: %[1]s.1/8
      installDisk:
        selector:
          serial: S5GXNF0Rtalos-m1
      nameservers: [127.0.0.53]
    - name: w1
      role: worker
      macs: ["52:54:00:bb:00:02"]
      installDisk:
        selector:
          serial: S5GXNF0Rtalos-m2
      address: %[1]s.2/8
      nameservers: [127.0.0.53]
    - name: w2
      role: worker
      macs: ["52:54:00:bb:00:03"]
      installDisk:
        selector:
          serial: ZC1talos-m3
      address: %[1]s.3/8
      nameservers: [127.0.0.53, 127.0.0.54]
`

// TestInteractive drives `dodai bootstrap --interactive` in tmux against
// three fake machines (one already in cluster.yaml, two new ones), answers
// the screens, and checks the cluster.yaml it writes, then that the
// declarative path applied those answers.
func TestInteractive(t *testing.T) {
	testutil.Slow(t, "drives the dodai binary in tmux against a real kube-apiserver")
	testutil.NeedTools(t, "hack/deps/bootstrap.apt", "tmux")
	dir := t.TempDir()
	bin := testutil.DodaiBinary(t)
	cdir := filepath.Join(dir, "lab")
	os.Mkdir(cdir, 0o755)
	b := 100 + os.Getpid()%150
	maint, cfg := fmt.Sprintf("127.%d.240", b), fmt.Sprintf("127.%d.241", b)
	if err := os.WriteFile(filepath.Join(cdir, cluster.FileName), fmt.Appendf(nil, clusterTmpl, cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(cdir, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	g := faketalos.NewGroup()
	kc := kubeconfig(t)
	var nodes []*faketalos.Node
	for i := 1; i <= 3; i++ {
		n, err := faketalos.Start(faketalos.Options{Name: fmt.Sprint("m", i), MaintenanceAddr: fmt.Sprintf("%s.%d", maint, i), Port: port, Group: g,
			Inventory: faketalos.DefaultInventory(fmt.Sprint("talos-m", i), fmt.Sprintf("52:54:00:bb:00:%02d", i)), Kubeconfig: kc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		nodes = append(nodes, n)
	}

	s := &tmuxSession{t: t, name: fmt.Sprintf("dodai-tui-%d", os.Getpid())}
	exitFile := filepath.Join(dir, "exit")
	cmd := fmt.Sprintf("%s -C %s bootstrap --interactive --network %s.0/24 --talos-port %d --poll-interval 20ms --timeout 60s 2>%s/stderr; echo $? > %s; sleep 600",
		bin, cdir, maint, port, dir, exitFile)
	s.run("new-session", "-d", "-s", s.name, "-x", "200", "-y", "60", cmd)
	socket := strings.TrimSpace(s.run("display-message", "-p", "#{socket_path}"))
	t.Cleanup(func() {
		_ = exec.Command("tmux", "-L", s.name, "kill-server").Run()
		_ = os.Remove(socket)
	})

	s.waitFor("Machines to configure", 60*time.Second)
	s.keys("Enter") // all three machines
	s.waitFor("Machine 52:54:00:bb:00:01", 20*time.Second)
	// m1 = cp1: accept everything (prefilled from cluster.yaml and inventory).
	s.keys("Enter", "Enter", "Enter", "Enter", "Enter", "Enter", "Enter")
	s.waitFor("Machine 52:54:00:bb:00:02", 20*time.Second)
	// m2: worker "w1", another address.
	s.keys("Down", "Enter", "C-u", "=w1", "Enter", "Enter", "Enter", "C-u", "="+cfg+".2/8", "Enter", "Enter", "Enter")
	s.waitFor("Machine 52:54:00:bb:00:03", 20*time.Second)
	// m3: worker "w2" on the SATA disk, another address, two DNS servers.
	s.keys("Down", "Enter", "C-u", "=w2", "Enter", "Down", "Enter", "Enter", "C-u", "="+cfg+".3/8", "Enter", "Enter", "C-u", "=127.0.0.53, 127.0.0.54", "Enter")
	s.waitFor("VIP", 20*time.Second)
	s.keys("Enter")
	s.waitFor("Write cluster.yaml and bootstrap?", 20*time.Second)
	s.keys("Enter")

	deadline := time.Now().Add(90 * time.Second)
	var code string
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(exitFile); err == nil {
			code = strings.TrimSpace(string(b))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
	got, _ := os.ReadFile(filepath.Join(cdir, cluster.FileName))
	want := fmt.Sprintf(wantTmpl, cfg)
	if string(got) != want {
		t.Fatalf("cluster.yaml:\n%s\nwant:\n%s\nscreen:\n%s\nstderr:\n%s", got, want, s.screen(), stderr)
	}
	if code != "0" {
		t.Fatalf("exit %q\n%s\nscreen:\n%s", code, stderr, s.screen())
	}
	// The declarative path applied the answers.
	for i, n := range nodes {
		if len(n.Applied()) != 1 || n.Endpoint() != fmt.Sprintf("%s.%d:%s", cfg, i+1, strconv.Itoa(port)) {
			t.Fatalf("node m%d: applied %d, endpoint %s", i+1, len(n.Applied()), n.Endpoint())
		}
	}
	if !strings.Contains(string(nodes[2].Applied()[0]), "disk: /dev/sda") {
		t.Fatalf("m3 config does not install to /dev/sda:\n%s", nodes[2].Applied()[0])
	}
	if g.BootstrapCalls() != 1 {
		t.Fatalf("bootstrap calls %d", g.BootstrapCalls())
	}
}
