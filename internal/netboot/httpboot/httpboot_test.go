package httpboot

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
)

const (
	knownMAC = "52:54:00:12:34:56"
	otherMAC = "52:54:00:00:00:02"
)

var (
	known = macaddr.MustParse(knownMAC)
	other = macaddr.MustParse(otherMAC)
)

type fixture struct {
	srv    *httptest.Server
	reg    *registry.Registry
	kernel []byte
	s      *Server
}

func newFixture(t *testing.T) *fixture { return newFixtureConfigs(t, true) }

func newFixtureConfigs(t *testing.T, serveConfigs bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	kernel := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k := write("amd64/vmlinuz", kernel)
	i := write("amd64/initramfs.xz", []byte("initramfs"))
	efi := write("ipxe/snponly.efi", []byte("EFI"))
	write("secret", []byte("nope"))
	reg, err := registry.New(registry.Options{Known: map[macaddr.MAC]string{known: "cp1", other: "cp2"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		BaseURL: "http://10.0.0.1:8080", Assets: map[string]Assets{"amd64": {Kernel: k, Initramfs: i}},
		IPXEFiles:       map[string]string{"snponly.efi": efi},
		ExtraKernelArgs: []string{"extra=1"}, Registry: reg, Metrics: prometheus.NewRegistry(), ServeConfigs: serveConfigs,
		Config: func(node string) ([]byte, error) { return []byte("machine: " + node + "\n"), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, reg: reg, kernel: kernel, s: s}
}

func (f *fixture) do(t *testing.T, method, path string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestBootScriptEndpoint(t *testing.T) {
	f := newFixture(t)
	code, body, _ := f.do(t, "GET", "/boot.ipxe?mac=52-54-00-12-34-56&arch=x86_64")
	if code != 200 || !strings.Contains(body, "talos.config=http://10.0.0.1:8080/config?mac=${mac}") || !strings.Contains(body, "extra=1") {
		t.Fatalf("%d\n%s", code, body)
	}
	if m, _ := f.reg.Get(known); m.Stage != "ipxe" || m.Arch != "amd64" {
		t.Fatalf("registry %+v", m)
	}
	code, body, _ = f.do(t, "GET", "/boot.ipxe?mac=02:00:00:00:00:09&arch=x86_64")
	if code != 200 || strings.Contains(body, "talos.config") {
		t.Fatalf("unknown machine: %d\n%s", code, body)
	}
	code, body, _ = f.do(t, "GET", "/boot.ipxe")
	if code != 200 || !strings.Contains(body, "chain http://10.0.0.1:8080/boot.ipxe?mac=${mac}&arch=${buildarch}") {
		t.Fatalf("rechain: %d %s", code, body)
	}
	for _, bad := range []string{"/boot.ipxe?mac=zz&arch=x86_64", "/boot.ipxe?mac=52:54:00:12:34:56&arch=mips", "/boot.ipxe?mac=52:54:00:12:34:56%0Ashell&arch=x86_64"} {
		if code, _, _ := f.do(t, "GET", bad); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
	if code, body, _ := f.do(t, "GET", "/boot.ipxe?mac=52:54:00:12:34:56&arch=arm64"); code != 404 || !strings.Contains(body, "arm64") {
		t.Errorf("missing arch assets: %d %s", code, body)
	}
}

func TestAssetsRange(t *testing.T) {
	f := newFixture(t)
	code, body, h := f.do(t, "GET", "/assets/amd64/vmlinuz?mac="+knownMAC)
	if code != 200 || body != string(f.kernel) || h.Get("Content-Length") != fmt.Sprint(len(f.kernel)) || h.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("full: %d len %d %v", code, len(body), h)
	}
	code, body, h = f.do(t, "GET", "/assets/amd64/vmlinuz", "Range", "bytes=100-199")
	if code != 206 || body != string(f.kernel[100:200]) || h.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(f.kernel)) {
		t.Fatalf("range: %d %q %v", code, body, h)
	}
	if code, _, _ := f.do(t, "GET", "/assets/amd64/vmlinuz", "Range", fmt.Sprintf("bytes=%d-", len(f.kernel)+5)); code != 416 {
		t.Fatalf("unsatisfiable range: %d", code)
	}
	if m, _ := f.reg.Get(known); m.Stage != "kernel" {
		t.Fatalf("stage %+v", m)
	}
	for _, p := range []string{"/assets/amd64/secret", "/assets/arm64/vmlinuz", "/assets/amd64/..%2fsecret", "/assets/../secret", "/ipxe/../secret", "/ipxe/secret"} {
		if code, _, _ := f.do(t, "GET", p); code != 404 && code != 400 && code != 301 {
			t.Errorf("%s: %d", p, code)
		}
	}
	if code, body, _ := f.do(t, "GET", "/ipxe/snponly.efi"); code != 200 || body != "EFI" {
		t.Errorf("ipxe file: %d %q", code, body)
	}
	got := testutil.ToFloat64(f.s.bytes.WithLabelValues("assets"))
	if got != float64(len(f.kernel)+100) {
		t.Errorf("bytes metric %v, want %d", got, len(f.kernel)+100)
	}
}

func TestConfigAccess(t *testing.T) {
	f := newFixture(t)
	lo := netip.MustParseAddr("127.0.0.1")
	// Before any DHCP: forbidden, even from the right address.
	if code, _, _ := f.do(t, "GET", "/config?mac="+knownMAC); code != 403 {
		t.Fatalf("before DHCP: %d", code)
	}
	// The machine's DHCP exchange bound 127.0.0.1 (the test client).
	f.reg.Observe(known, registry.FromDHCP, lo, "amd64", registry.StageDHCP)
	code, body, h := f.do(t, "GET", "/config?mac="+knownMAC)
	if code != 200 || body != "machine: cp1\n" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("own config: %d %q", code, body)
	}
	if m, _ := f.reg.Get(known); m.Stage != "config" {
		t.Fatalf("stage %+v", m)
	}
	// Another known machine's config: its DHCP bound another address.
	f.reg.Observe(other, registry.FromDHCP, netip.MustParseAddr("10.0.0.7"), "amd64", registry.StageDHCP)
	if code, body, _ := f.do(t, "GET", "/config?mac="+otherMAC); code != 403 || strings.Contains(body, "cp2") {
		t.Fatalf("other's config: %d %q", code, body)
	}
	// Unknown MAC, bad MAC.
	f.reg.Observe(macaddr.MustParse("02:00:00:00:00:01"), registry.FromDHCP, lo, "", registry.StageDHCP)
	if code, _, _ := f.do(t, "GET", "/config?mac=02:00:00:00:00:01"); code != 403 {
		t.Fatalf("unknown: %d", code)
	}
	if code, _, _ := f.do(t, "GET", "/config?mac=nope"); code != 400 {
		t.Fatalf("bad mac: %d", code)
	}
	// Boot once: the next netboot after the config fetch boots from disk.
	f.reg.Observe(known, registry.FromDHCP, lo, "amd64", registry.StageIPXE)
	code, body, _ = f.do(t, "GET", "/boot.ipxe?mac="+knownMAC+"&arch=x86_64")
	if code != 200 || !strings.Contains(body, "sanboot") || strings.Contains(body, "kernel") {
		t.Fatalf("installed machine: %d\n%s", code, body)
	}
	// Reinstall (loopback only) makes it netboot Talos again.
	if code, body, _ := f.do(t, "POST", "/reinstall?mac="+knownMAC); code != 200 || !strings.Contains(body, "dhcp") {
		t.Fatalf("reinstall: %d %s", code, body)
	}
	if _, body, _ := f.do(t, "GET", "/boot.ipxe?mac="+knownMAC+"&arch=x86_64"); !strings.Contains(body, "kernel ") {
		t.Fatalf("after reinstall:\n%s", body)
	}
	if code, _, _ := f.do(t, "POST", "/installed?mac="+knownMAC); code != 200 || !f.reg.Installed(known) {
		t.Fatalf("installed: %d", code)
	}
	if code, _, _ := f.do(t, "GET", "/installed?mac="+knownMAC); code != 405 {
		t.Fatalf("GET /installed: %d", code)
	}
}

// TestNoConfigServing: without ServeConfigs (proxy mode's default) known
// machines get no talos.config= (they boot into maintenance mode) and
// /config serves nothing, even to the machine's own DHCP address.
func TestNoConfigServing(t *testing.T) {
	f := newFixtureConfigs(t, false)
	code, body, _ := f.do(t, "GET", "/boot.ipxe?mac="+knownMAC+"&arch=x86_64")
	if code != 200 || strings.Contains(body, "talos.config") || !strings.Contains(body, "kernel http://10.0.0.1:8080/assets/amd64/vmlinuz") {
		t.Fatalf("script: %d\n%s", code, body)
	}
	f.reg.Observe(known, registry.FromDHCP, netip.MustParseAddr("127.0.0.1"), "amd64", registry.StageDHCP)
	code, body, _ = f.do(t, "GET", "/config?mac="+knownMAC)
	if code != 404 || strings.Contains(body, "cp1") || !strings.Contains(body, "dodai bootstrap") {
		t.Fatalf("config: %d %q", code, body)
	}
	if m, _ := f.reg.Get(known); m.Stage == "config" {
		t.Fatal("refused request moved the machine to stage config")
	}
}
