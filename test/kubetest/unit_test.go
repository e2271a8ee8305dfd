package kubetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestToolsDirMissingNamesTheBuildScript(t *testing.T) {
	t.Setenv(ToolsEnvVar, t.TempDir())
	for name, f := range map[string]func() (string, error){"ToolsDir": ToolsDir, "FluxCRDDir": FluxCRDDir, "FluxManifestsDir": FluxManifestsDir} {
		_, err := f()
		if err == nil || !strings.Contains(err.Error(), "run hack/deps/kube.sh (or hack/test.sh)") {
			t.Errorf("%s with an empty tools dir: error %v, want one naming hack/deps/kube.sh", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Start(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "hack/deps/kube.sh") {
		t.Errorf("Start with an empty tools dir: error %v, want one naming hack/deps/kube.sh", err)
	}
}

func TestToolsDirIncomplete(t *testing.T) {
	base := t.TempDir()
	t.Setenv(ToolsEnvVar, base)
	target := filepath.Join(base, "kube-abc")
	if err := os.MkdirAll(filepath.Join(target, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "bin", "etcd"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("kube-abc", filepath.Join(base, "kube")); err != nil {
		t.Fatal(err)
	}
	_, err := ToolsDir()
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "hack/deps/kube.sh") {
		t.Fatalf("ToolsDir with only etcd: error %v, want one naming kube-apiserver and hack/deps/kube.sh", err)
	}
	for _, b := range requiredBinaries {
		if err := os.WriteFile(filepath.Join(target, "bin", b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := ToolsDir()
	if err != nil || dir != filepath.Join(target, "bin") {
		t.Fatalf("ToolsDir = %q, %v; want the resolved %s/bin", dir, err, target)
	}
}

func TestPKI(t *testing.T) {
	p, err := newPKI(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caCertPEM) {
		t.Fatal("CA PEM does not parse")
	}
	server := readCert(t, p.serverCert)
	for _, name := range []string{"127.0.0.1", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
		t.Error("serving certificate verifies for example.com")
	}
	admin := readCert(t, p.adminCert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin client certificate: %v", err)
	}
	if admin.Subject.CommonName != "admin" || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin subject = %v, want CN=admin,O=system:masters", admin.Subject)
	}
	for _, key := range []string{p.caKey, p.serverKey, p.adminKey, p.saKey, p.tokenFile} {
		st, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
		}
	}
	tok, err := os.ReadFile(p.tokenFile)
	if err != nil || string(tok) != p.adminToken+",admin,admin-uid,system:masters\n" {
		t.Errorf("token file = %q, %v", tok, err)
	}
	q, err := newPKI(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(p.caCertPEM, q.caCertPEM) || p.adminToken == q.adminToken {
		t.Error("two PKIs share a CA or token")
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFreePortsDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		ports, err := freePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p <= 0 || seen[p] {
				t.Fatalf("port %d handed out twice or invalid (%v)", p, ports)
			}
			seen[p] = true
		}
	}
}

func TestWaitReadyAbortsWhenProcessDies(t *testing.T) {
	log := filepath.Join(t.TempDir(), "dies.log")
	p, err := startProcess("dies", log, os.Environ(), "/bin/sh", "-c", "echo boom: address already in use; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.waitReady(context.Background(), time.Minute, func(context.Context) error { return errors.New("not ready") })
	if !errors.Is(err, errExited) {
		t.Fatalf("waitReady = %v, want errExited", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("waitReady took %v after the process died", d)
	}
	for _, want := range []string{"boom: address already in use", "exit status 3", "not ready", log} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	p, err := startProcess("sleeper", filepath.Join(t.TempDir(), "s.log"), os.Environ(), "/bin/sh", "-c", "echo waiting; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	err = p.waitReady(context.Background(), 300*time.Millisecond, func(context.Context) error { return errors.New("nope") })
	if err == nil || errors.Is(err, errExited) || !strings.Contains(err.Error(), "deadline exceeded") || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("waitReady = %v, want a deadline error with the log tail", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	// The shell ignores SIGTERM and exec keeps the ignored disposition.
	p, err := startProcess("stubborn", filepath.Join(t.TempDir(), "s.log"), os.Environ(), "/bin/sh", "-c", `trap "" TERM; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.pid()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := p.stop(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("stop returned after %v, before the SIGTERM grace period: did the process ignore SIGTERM?", d)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists after stop (kill 0: %v)", pid, err)
	}
	if err := p.stop(time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 100000 {
		b.WriteString("line ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	b.WriteString("last\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(tailFile(path, 3), "\n")
	if len(got) != 3 || got[2] != "last" {
		t.Errorf("tail = %q", got)
	}
	if s := tailFile(filepath.Join(t.TempDir(), "none"), 3); !strings.Contains(s, "cannot read log") {
		t.Errorf("tail of a missing file = %q", s)
	}
}

// untar returns the files of a .tgz.
func untar(t *testing.T, tgz []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = string(b)
	}
}

func TestPackageChart(t *testing.T) {
	tgz, err := PackageChart("demo", ChartSpec{Version: "1.2.3", Data: map[string]string{"k": "v"}, Fail: "broken on purpose", Templates: map[string]string{"extra.yaml": "# extra\n"}})
	if err != nil {
		t.Fatal(err)
	}
	files := untar(t, tgz)
	for _, want := range []string{"demo/Chart.yaml", "demo/values.yaml", "demo/templates/configmap.yaml", "demo/templates/fail.yaml", "demo/templates/extra.yaml"} {
		if _, ok := files[want]; !ok {
			t.Errorf("archive lacks %s (has %v)", want, files)
		}
	}
	var chart map[string]string
	if err := yaml.Unmarshal([]byte(files["demo/Chart.yaml"]), &chart); err != nil {
		t.Fatal(err)
	}
	if chart["apiVersion"] != "v2" || chart["name"] != "demo" || chart["version"] != "1.2.3" {
		t.Errorf("Chart.yaml = %v", chart)
	}
	var values struct{ Data map[string]string }
	if err := yaml.Unmarshal([]byte(files["demo/values.yaml"]), &values); err != nil || values.Data["k"] != "v" {
		t.Errorf("values.yaml = %q (%v), want data.k=v", files["demo/values.yaml"], err)
	}
	if !strings.Contains(files["demo/templates/fail.yaml"], `fail "broken on purpose"`) {
		t.Errorf("fail template = %q", files["demo/templates/fail.yaml"])
	}

	for _, bad := range []struct {
		name string
		spec ChartSpec
	}{
		{"values not YAML", ChartSpec{Values: "data: [", Data: map[string]string{"a": "b"}}},
		{"template escapes", ChartSpec{Templates: map[string]string{"../x.yaml": ""}}},
	} {
		if _, err := PackageChart("demo", bad.spec); err == nil || !strings.Contains(err.Error(), "chart demo") {
			t.Errorf("%s: error %v, want one naming the chart", bad.name, err)
		}
	}
}

func TestHelmRepoServesIndexAndCharts(t *testing.T) {
	r := NewHelmRepo(t)
	if !strings.HasPrefix(r.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q is not on 127.0.0.1", r.URL())
	}
	if err := r.Add("demo", ChartSpec{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("demo", ChartSpec{Version: "0.2.0"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("bad/name", ChartSpec{}); err == nil {
		t.Error("Add accepted a chart name with a slash")
	}
	var idx indexFile
	if err := yaml.Unmarshal(get(t, r.URL()+"/index.yaml"), &idx); err != nil {
		t.Fatal(err)
	}
	entries := idx.Entries["demo"]
	if idx.APIVersion != "v1" || len(entries) != 2 {
		t.Fatalf("index = %+v, want two demo versions", idx)
	}
	for _, e := range entries {
		if len(e.URLs) != 1 || e.URLs[0] != r.URL()+"/demo-"+e.Version+".tgz" {
			t.Errorf("%s urls = %v, want the absolute URL on the listener", e.Version, e.URLs)
			continue
		}
		tgz := get(t, e.URLs[0])
		sum := sha256.Sum256(tgz)
		if hex.EncodeToString(sum[:]) != e.Digest {
			t.Errorf("%s digest %s does not match the served archive", e.Version, e.Digest)
		}
		if c := untar(t, tgz)["demo/Chart.yaml"]; !strings.Contains(c, "version: "+e.Version) {
			t.Errorf("%s archive Chart.yaml = %q", e.Version, c)
		}
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}
